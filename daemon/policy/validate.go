// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	netutils "k8s.io/utils/net"

	"github.com/weftnet/weft/subnet/k8sname"
)

// ErrorType is the kind of a [FieldError], spelled as the API server
// spells it in a Status cause ("FieldValueInvalid", ...).
type ErrorType string

// The error types the API server reports for NetworkPolicy objects.
const (
	ErrRequired     ErrorType = "FieldValueRequired"
	ErrInvalid      ErrorType = "FieldValueInvalid"
	ErrNotSupported ErrorType = "FieldValueNotSupported"
	ErrForbidden    ErrorType = "FieldValueForbidden"
	ErrTooLong      ErrorType = "FieldValueTooLong"
)

// FieldError is one reason an object is invalid: the field path as the API
// server writes it ("spec.ingress[0].from[1].ipBlock.cidr"), the error type
// and a human detail.
type FieldError struct {
	Field  string
	Type   ErrorType
	Detail string
}

func (e FieldError) Error() string { return fmt.Sprintf("%s: %s: %s", e.Field, e.Type, e.Detail) }

// ErrorList is every reason an object is invalid; nil when it is valid.
type ErrorList []FieldError

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// Validate checks np as the API server checks a new NetworkPolicy (after
// its defaulting, which does not change the verdict): the same objects are
// refused, with the same field paths and cause types, as a kube-apiserver
// of Kubernetes 1.37 with its default feature gates refuses them (e2e
// TestPolicyValidationAgainstAPIServer replays testdata/validation.json
// on one). The namespace must be set (the API server takes it from the
// request URL).
func Validate(np *networkingv1.NetworkPolicy) ErrorList {
	var v validator
	v.meta(&np.ObjectMeta)
	v.spec(&np.Spec)
	return v.errs
}

type validator struct{ errs ErrorList }

func (v *validator) add(field string, t ErrorType, format string, a ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Type: t, Detail: fmt.Sprintf(format, a...)})
}

func (v *validator) meta(m *metav1.ObjectMeta) {
	switch {
	case m.Name == "" && m.GenerateName == "":
		v.add("metadata.name", ErrRequired, "name or generateName is required")
	case m.Name != "":
		if msg := k8sname.DNSSubdomain(m.Name); msg != "" {
			v.add("metadata.name", ErrInvalid, "%q: %s", m.Name, msg)
		}
	}
	if m.GenerateName != "" {
		if msg := k8sname.DNSSubdomain(maskTrailingDash(m.GenerateName)); msg != "" {
			v.add("metadata.generateName", ErrInvalid, "%q: %s", m.GenerateName, msg)
		}
		if m.Name == "" {
			// The server generates the name before validating: at most 58
			// characters of generateName and 5 lowercase alphanumerics.
			base := m.GenerateName[:min(len(m.GenerateName), 58)]
			if msg := k8sname.DNSSubdomain(base + "bcdfg"); msg != "" {
				v.add("metadata.name", ErrInvalid, "%q and 5 generated characters: %s", base, msg)
			}
		}
	}
	if m.Namespace == "" {
		v.add("metadata.namespace", ErrRequired, "")
	} else if msg := k8sname.DNSLabel(m.Namespace); msg != "" {
		v.add("metadata.namespace", ErrInvalid, "%q: %s", m.Namespace, msg)
	}
	v.labels(m.Labels, "metadata.labels")
	for k := range m.Annotations {
		if msg := k8sname.QualifiedName(strings.ToLower(k)); msg != "" {
			v.add("metadata.annotations", ErrInvalid, "%q: %s", k, msg)
		}
	}
}

func maskTrailingDash(s string) string {
	if len(s) > 1 && strings.HasSuffix(s, "-") {
		return s[:len(s)-1] + "a"
	}
	return s
}

func (v *validator) spec(s *networkingv1.NetworkPolicySpec) {
	v.selector(&s.PodSelector, "spec.podSelector")
	for i, r := range s.Ingress {
		path := fmt.Sprintf("spec.ingress[%d]", i)
		for j := range r.Ports {
			v.port(&r.Ports[j], fmt.Sprintf("%s.ports[%d]", path, j))
		}
		for j := range r.From {
			v.peer(&r.From[j], fmt.Sprintf("%s.from[%d]", path, j))
		}
	}
	for i, r := range s.Egress {
		path := fmt.Sprintf("spec.egress[%d]", i)
		for j := range r.Ports {
			v.port(&r.Ports[j], fmt.Sprintf("%s.ports[%d]", path, j))
		}
		for j := range r.To {
			v.peer(&r.To[j], fmt.Sprintf("%s.to[%d]", path, j))
		}
	}
	if len(s.PolicyTypes) > 2 {
		v.add("spec.policyTypes", ErrInvalid, "may not specify more than two policyTypes")
		return
	}
	for i, t := range s.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			v.add(fmt.Sprintf("spec.policyTypes[%d]", i), ErrNotSupported, "%q: supported values: \"Ingress\", \"Egress\"", t)
		}
	}
}

func (v *validator) port(p *networkingv1.NetworkPolicyPort, path string) {
	if p.Protocol != nil {
		// Defaulting fills in TCP only for an absent protocol; "" is refused.
		switch *p.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			v.add(path+".protocol", ErrNotSupported, "%q: supported values: \"SCTP\", \"TCP\", \"UDP\"", *p.Protocol)
		}
	}
	switch {
	case p.Port == nil:
		if p.EndPort != nil {
			v.add(path+".endPort", ErrInvalid, "%d: may not be specified when `port` is not specified", *p.EndPort)
		}
	case p.Port.Type == intstr.Int:
		if msg := portNumber(int64(p.Port.IntVal)); msg != "" {
			v.add(path+".port", ErrInvalid, "%d: %s", p.Port.IntVal, msg)
		}
		if p.EndPort != nil {
			if *p.EndPort < p.Port.IntVal {
				v.add(path+".endPort", ErrInvalid, "%d: must be greater than or equal to `port`", *p.EndPort)
			}
			if msg := portNumber(int64(*p.EndPort)); msg != "" {
				v.add(path+".endPort", ErrInvalid, "%d: %s", *p.EndPort, msg)
			}
		}
	default:
		if p.EndPort != nil {
			v.add(path+".endPort", ErrInvalid, "%d: may not be specified when `port` is non-numeric", *p.EndPort)
		}
		for _, msg := range k8sname.PortName(p.Port.StrVal) {
			v.add(path+".port", ErrInvalid, "%q: %s", p.Port.StrVal, msg)
		}
	}
}

func (v *validator) peer(p *networkingv1.NetworkPolicyPeer, path string) {
	n := 0
	if p.PodSelector != nil {
		n++
		v.selector(p.PodSelector, path+".podSelector")
	}
	if p.NamespaceSelector != nil {
		n++
		v.selector(p.NamespaceSelector, path+".namespaceSelector")
	}
	if p.IPBlock != nil {
		n++
		v.ipBlock(p.IPBlock, path+".ipBlock")
	}
	switch {
	case n == 0:
		v.add(path, ErrRequired, "must specify a peer")
	case n > 1 && p.IPBlock != nil:
		v.add(path, ErrForbidden, "may not specify both ipBlock and another peer")
	}
}

func (v *validator) ipBlock(b *networkingv1.IPBlock, path string) {
	if b.CIDR == "" {
		v.add(path+".cidr", ErrRequired, "")
		return
	}
	v.cidr(b.CIDR, path+".cidr")
	// The subset check uses the lax parse, as the API server does: a CIDR
	// refused only by the strict rule (host bits set, leading zeros) still
	// has its excepts checked.
	_, cidr, err := netutils.ParseCIDRSloppy(b.CIDR)
	if err != nil {
		return
	}
	cidrBits, _ := cidr.Mask.Size()
	for i, e := range b.Except {
		epath := fmt.Sprintf("%s.except[%d]", path, i)
		v.cidr(e, epath)
		_, ex, err := netutils.ParseCIDRSloppy(e)
		if err != nil {
			continue
		}
		if exBits, _ := ex.Mask.Size(); !cidr.Contains(ex.IP) || cidrBits >= exBits {
			v.add(epath, ErrInvalid, "%q: must be a strict subset of `cidr`", e)
		}
	}
}

// cidr checks an ipBlock CIDR as the API server does for a new object
// (its StrictIPCIDRValidation rule, on by default since Kubernetes 1.36):
// at most one error, the first of: not a CIDR even to the lax parser of
// older servers; leading zeros; an IPv4-mapped IPv6 address; host bits set.
func (v *validator) cidr(s, path string) {
	if _, _, err := netutils.ParseCIDRSloppy(s); err != nil {
		v.add(path, ErrInvalid, "%q: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)", s)
		return
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		v.add(path, ErrInvalid, "%q: must not have leading 0s in IP or prefix length", s)
	case p.Addr().Is4In6():
		v.add(path, ErrInvalid, "%q: must not have an IPv4-mapped IPv6 address", s)
	case p.Addr() != p.Masked().Addr():
		v.add(path, ErrInvalid, "%q: must not have bits set beyond the prefix length", s)
	}
}

// parseCIDR parses a CIDR the way [Validate] accepts it, for the compiler.
// IPv4-mapped IPv6 prefixes and zones are refused; the prefix is masked.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("unsupported CIDR %q", s)
	}
	return p.Masked(), nil
}

func (v *validator) selector(s *metav1.LabelSelector, path string) {
	v.labels(s.MatchLabels, path+".matchLabels")
	for i, r := range s.MatchExpressions {
		rpath := fmt.Sprintf("%s.matchExpressions[%d]", path, i)
		switch r.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(r.Values) == 0 {
				v.add(rpath+".values", ErrRequired, "must be specified when `operator` is 'In' or 'NotIn'")
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(r.Values) > 0 {
				v.add(rpath+".values", ErrForbidden, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
			}
		default:
			v.add(rpath+".operator", ErrInvalid, "%q: not a valid selector operator", r.Operator)
		}
		if msg := k8sname.QualifiedName(r.Key); msg != "" {
			v.add(rpath+".key", ErrInvalid, "%q: %s", r.Key, msg)
		}
		for j, val := range r.Values {
			if msg := k8sname.LabelValue(val); msg != "" {
				v.add(fmt.Sprintf("%s.values[%d]", rpath, j), ErrInvalid, "%q: %s", val, msg)
			}
		}
	}
}

// labels checks a label map; like the API server it reports at the map's
// path, not at the key's.
func (v *validator) labels(m map[string]string, path string) {
	for k, val := range m {
		if msg := k8sname.QualifiedName(k); msg != "" {
			v.add(path, ErrInvalid, "%q: %s", k, msg)
		}
		if msg := k8sname.LabelValue(val); msg != "" {
			v.add(path, ErrInvalid, "%q: %s", val, msg)
		}
	}
}

func portNumber(n int64) string {
	if n < 1 || n > 65535 {
		return "must be between 1 and 65535, inclusive"
	}
	return ""
}
