// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/weftnet/weft/daemon/policy"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

const policyUsage = `usage: weftctl policy apply -f FILE [-n NAMESPACE] [flags]
       weftctl policy get NAME [-n NAMESPACE] [-o yaml|json] [flags]
       weftctl policy list [-n NAMESPACE | -A] [flags]
       weftctl policy delete NAME [-n NAMESPACE] [flags]
       weftctl policy explain --from POD|IP --to POD|IP --port PORT[/PROTO] [flags]

NetworkPolicy objects (networking.k8s.io/v1) kept in etcd at
<etcd-prefix>/policies/<namespace>/<name>, for etcd mode. 'apply' reads
YAML or JSON (several objects separated by ---, or a v1 List; - reads
stdin), validates every object as the Kubernetes API server does and
writes all of them in one transaction, or nothing if any is invalid. The
namespace is the object's, else -n, else "default". 'explain' asks the
nodes' weftd whether a connection is allowed and which rule decides.
`

// maxPolicyFile bounds what 'policy apply' reads from a file or stdin.
const maxPolicyFile = 16 << 20

func cmdPolicy(ctx context.Context, args []string) error {
	return runPolicy(ctx, args, stdIO())
}

func runPolicy(ctx context.Context, args []string, cio *cmdIO) error {
	if len(args) == 0 {
		fmt.Fprint(cio.errOut, policyUsage)
		return errors.New("policy: no subcommand given (apply, get, list, delete or explain)")
	}
	switch args[0] {
	case "apply":
		return policyApply(ctx, args[1:], cio)
	case "get":
		return policyGet(ctx, args[1:], cio)
	case "list", "ls":
		return policyList(ctx, args[1:], cio)
	case "delete", "rm":
		return policyDelete(ctx, args[1:], cio)
	case "explain":
		return policyExplain(ctx, args[1:], cio)
	case "-h", "--help", "help":
		fmt.Fprint(cio.out, policyUsage)
		return nil
	}
	fmt.Fprint(cio.errOut, policyUsage)
	return fmt.Errorf("policy: unknown subcommand %q (want apply, get, list, delete or explain)", args[0])
}

// namespaceFlag registers -n and --namespace on fs.
func namespaceFlag(fs *flag.FlagSet) *string {
	ns := fs.String("namespace", "", `namespace (default "default")`)
	fs.StringVar(ns, "n", "", "short for --namespace")
	return ns
}

// namespaceArg returns the namespace given with -n, "default" when none
// was, after checking it as the API server checks a namespace name.
func namespaceArg(ns string) (string, error) {
	if ns == "" {
		ns = "default"
	}
	return ns, checkNamespace(ns)
}

// checkPolicyName checks a policy name given on the command line as the
// API server checks metadata.name.
func checkPolicyName(name string) error {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	for _, e := range policy.Validate(np) {
		if e.Field == "metadata.name" {
			return e
		}
	}
	return nil
}

func checkNamespace(ns string) error {
	if errs := policy.ValidateNamespace(policy.Namespace{Name: ns}); errs != nil {
		return fmt.Errorf("namespace %q: %w", ns, errs)
	}
	return nil
}

func policyApply(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl policy apply", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	conn := connFlags(fs)
	ns := namespaceFlag(fs)
	file := fs.String("f", "", "file of NetworkPolicy objects, YAML or JSON (- for stdin)")
	dryRun := fs.Bool("dry-run", false, "validate only; write nothing")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("policy apply: unexpected arguments %q (give the file with -f)", pos)
	case *file == "":
		return errors.New("policy apply: give exactly one file with -f (- for stdin)")
	}
	if *ns != "" {
		if err := checkNamespace(*ns); err != nil {
			return fmt.Errorf("policy apply: %w", err)
		}
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}
	data, err := readInput(*file, cio)
	if err != nil {
		return fmt.Errorf("policy apply: %w", err)
	}
	nps, err := parsePolicies(data, *ns)
	if err != nil {
		return fmt.Errorf("policy apply: %s: %w", inputName(*file), err)
	}
	for i, np := range nps {
		if errs := policy.Validate(np); errs != nil {
			return fmt.Errorf("policy apply: %s: object %d, NetworkPolicy %s/%s is invalid, nothing written:\n%s",
				inputName(*file), i+1, np.Namespace, np.Name, fieldErrors(errs))
		}
		if _, err := subnetetcd.EncodePolicy(np); err != nil {
			return fmt.Errorf("policy apply: %s: object %d: %w; nothing written", inputName(*file), i+1, err)
		}
	}
	if *dryRun {
		for _, np := range nps {
			fmt.Fprintf(cio.out, "networkpolicy %s/%s valid (dry run)\n", np.Namespace, np.Name)
		}
		return nil
	}
	st, closeStore, err := conn.store(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := st.PutPolicies(ctx, nps); err != nil {
		return conn.explain(fmt.Errorf("policy apply: %w", err))
	}
	for _, np := range nps {
		fmt.Fprintf(cio.out, "networkpolicy %s/%s applied\n", np.Namespace, np.Name)
	}
	return nil
}

func inputName(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}

// fieldErrors writes one field error a line, as the API server's causes.
func fieldErrors(errs policy.ErrorList) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "  %s: %s", e.Field, e.Type)
		if e.Detail != "" {
			fmt.Fprintf(&b, ": %s", e.Detail)
		}
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n")
}

// readInput reads file (stdin for -), at most maxPolicyFile bytes. A file
// is read only when it is a regular file (a link to one is followed, as
// kubectl does): a FIFO or device would block or never end.
func readInput(file string, cio *cmdIO) ([]byte, error) {
	var r io.Reader = cio.in
	if file != "-" {
		st, err := os.Stat(file)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file (%s)", file, st.Mode().Type())
		}
		if st.Size() > maxPolicyFile {
			return nil, fmt.Errorf("%s is %d bytes, more than %d", file, st.Size(), maxPolicyFile)
		}
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPolicyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", inputName(file), err)
	}
	if len(data) > maxPolicyFile {
		return nil, fmt.Errorf("%s is more than %d bytes", inputName(file), maxPolicyFile)
	}
	return data, nil
}

// parsePolicies parses YAML or JSON documents (separated by --- lines)
// of NetworkPolicy objects or v1 Lists of them, strictly (unknown and
// duplicate fields are refused, as kubectl's strict field validation
// does), and sets each one's namespace: its own, else ns, else default.
// An object whose namespace differs from a given ns is refused.
func parsePolicies(data []byte, ns string) ([]*networkingv1.NetworkPolicy, error) {
	var out []*networkingv1.NetworkPolicy
	for i, doc := range splitDocuments(data) {
		where := fmt.Sprintf("document %d", i+1)
		items, err := parseDocument(doc, where)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			np := it.np
			switch {
			case np.Namespace == "" && ns == "":
				np.Namespace = "default"
			case np.Namespace == "":
				np.Namespace = ns
			case ns != "" && np.Namespace != ns:
				return nil, fmt.Errorf("%s: the namespace of the object (%s) does not match the namespace given with -n (%s)", it.where, np.Namespace, ns)
			}
			out = append(out, np)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no objects in the input")
	}
	return out, nil
}

type parsedPolicy struct {
	np    *networkingv1.NetworkPolicy
	where string
}

func parseDocument(doc []byte, where string) ([]parsedPolicy, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, fmt.Errorf("%s: not an object: %w", where, err)
	}
	switch {
	case tm.APIVersion == "networking.k8s.io/v1" && tm.Kind == "NetworkPolicy":
		var np networkingv1.NetworkPolicy
		if err := strictJSON(doc, &np); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return []parsedPolicy{{&np, where}}, nil
	case tm.APIVersion == "v1" && tm.Kind == "List":
		var list struct {
			metav1.TypeMeta `json:",inline"`
			metav1.ListMeta `json:"metadata,omitempty"`
			Items           []json.RawMessage `json:"items"`
		}
		if err := strictJSON(doc, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		var out []parsedPolicy
		for j, raw := range list.Items {
			items, err := parseDocument(raw, fmt.Sprintf("%s, items[%d]", where, j))
			if err != nil {
				return nil, err
			}
			if len(items) != 1 {
				return nil, fmt.Errorf("%s, items[%d]: a List inside a List", where, j)
			}
			out = append(out, items...)
		}
		return out, nil
	case tm.Kind == "" || tm.APIVersion == "":
		return nil, fmt.Errorf("%s: apiVersion and kind are required (apiVersion: networking.k8s.io/v1, kind: NetworkPolicy)", where)
	}
	return nil, fmt.Errorf("%s: kind %q of apiVersion %q is not something weftctl policy applies (want NetworkPolicy of networking.k8s.io/v1, or a v1 List of them)", where, tm.Kind, tm.APIVersion)
}

// strictJSON decodes doc (YAML or JSON) into v refusing unknown and
// duplicate fields.
func strictJSON(doc []byte, v any) error {
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return fmt.Errorf("strict decoding error: %w", err)
	}
	return nil
}

// splitDocuments splits YAML at lines that are "---" (with a comment or
// spaces after); documents that are empty or only comments are dropped.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), maxPolicyFile+1)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "---"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

func hasContent(doc []byte) bool {
	for _, l := range strings.Split(string(doc), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			return true
		}
	}
	return false
}

func policyGet(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl policy get", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	conn := connFlags(fs)
	ns := namespaceFlag(fs)
	output := fs.String("o", "yaml", "output: yaml or json")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("policy get: give exactly one policy name")
	}
	if err := checkPolicyName(pos[0]); err != nil {
		return fmt.Errorf("policy get: %w", err)
	}
	if *output != "yaml" && *output != "json" {
		return fmt.Errorf("policy get: -o %q: want yaml or json", *output)
	}
	namespace, err := namespaceArg(*ns)
	if err != nil {
		return fmt.Errorf("policy get: %w", err)
	}
	st, closeStore, err := conn.open(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	np, err := st.GetPolicy(ctx, namespace, pos[0])
	if err != nil {
		return conn.explain(fmt.Errorf("policy get: %w", err))
	}
	js, err := json.MarshalIndent(np, "", "  ")
	if err != nil {
		return err
	}
	if *output == "json" {
		_, err = fmt.Fprintf(cio.out, "%s\n", js)
		return err
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return err
	}
	_, err = cio.out.Write(y)
	return err
}

func policyList(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl policy list", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	conn := connFlags(fs)
	ns := namespaceFlag(fs)
	all := fs.Bool("A", false, "list the policies of every namespace")
	fs.BoolVar(all, "all-namespaces", false, "same as -A")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("policy list: unexpected arguments %q", pos)
	case *all && *ns != "":
		return errors.New("policy list: give -n or -A, not both")
	}
	namespace, err := namespaceArg(*ns)
	if err != nil {
		return fmt.Errorf("policy list: %w", err)
	}
	st, closeStore, err := conn.open(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	view, err := subnetetcd.NewPolicySource(st).ListPolicies(ctx)
	if err != nil {
		return conn.explain(fmt.Errorf("policy list: %w", err))
	}
	rejected := map[string]bool{}
	for _, r := range view.Rejected {
		if !strings.HasPrefix(r.Key, st.PoliciesPrefix()) {
			continue
		}
		rejected[r.Key] = true
		fmt.Fprintf(cio.errOut, "rejected %s: %v\n  (weftd keeps its last valid version; without one, the pods it selects are denied all traffic)\n", r.Key, r.Err)
	}
	tw := tabwriter.NewWriter(cio.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tPOD-SELECTOR\tPOLICY-TYPES")
	n := 0
	for _, np := range view.Policies {
		if rejected[st.PolicyKey(np.Namespace, np.Name)] || (!*all && np.Namespace != namespace) {
			continue
		}
		n++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", np.Namespace, np.Name, selectorText(&np.Spec.PodSelector), policyTypes(np))
	}
	if n == 0 {
		if *all {
			fmt.Fprintf(cio.out, "no policies under %s\n", st.PoliciesPrefix())
		} else {
			fmt.Fprintf(cio.out, "no policies in namespace %s\n", namespace)
		}
		return nil
	}
	return tw.Flush()
}

// selectorText writes a label selector as kubectl does.
func selectorText(s *metav1.LabelSelector) string {
	if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		return "<none>"
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return "<invalid>"
	}
	return sel.String()
}

// policyTypes gives the directions a policy isolates, with the API's
// defaulting when policyTypes is empty.
func policyTypes(np *networkingv1.NetworkPolicy) string {
	var t []string
	for _, p := range np.Spec.PolicyTypes {
		t = append(t, string(p))
	}
	if len(t) == 0 {
		t = []string{"Ingress"}
		if len(np.Spec.Egress) > 0 {
			t = append(t, "Egress")
		}
	}
	return strings.Join(t, ",")
}

func policyDelete(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl policy delete", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	conn := connFlags(fs)
	ns := namespaceFlag(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New("policy delete: give exactly one policy name, or more")
	}
	for _, name := range pos {
		if err := checkPolicyName(name); err != nil {
			return fmt.Errorf("policy delete: %w", err)
		}
	}
	namespace, err := namespaceArg(*ns)
	if err != nil {
		return fmt.Errorf("policy delete: %w", err)
	}
	st, closeStore, err := conn.open(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	var errs []error
	for _, name := range pos {
		if err := st.DeletePolicy(ctx, namespace, name); err != nil {
			errs = append(errs, conn.explain(fmt.Errorf("policy delete: %w", err)))
			continue
		}
		fmt.Fprintf(cio.out, "networkpolicy %s/%s deleted\n", namespace, name)
	}
	return errors.Join(errs...)
}

const namespaceUsage = `usage: weftctl namespace label NAMESPACE KEY=VALUE ... [KEY-] ... [flags]
       weftctl namespace list [flags]

Namespace labels for etcd mode, kept at <etcd-prefix>/namespaces/<name>;
policies' namespaceSelectors match them. KEY=VALUE sets a label (one
that has another value only with --overwrite), KEY- removes it. Every namespace carries
kubernetes.io/metadata.name with its own name, as Kubernetes sets it; it
cannot be removed or set to another value.
`

func cmdNamespace(ctx context.Context, args []string) error {
	return runNamespace(ctx, args, stdIO())
}

func runNamespace(ctx context.Context, args []string, cio *cmdIO) error {
	if len(args) == 0 {
		fmt.Fprint(cio.errOut, namespaceUsage)
		return errors.New("namespace: no subcommand given (label or list)")
	}
	switch args[0] {
	case "label":
		return namespaceLabel(ctx, args[1:], cio)
	case "list", "ls":
		return namespaceList(ctx, args[1:], cio)
	case "-h", "--help", "help":
		fmt.Fprint(cio.out, namespaceUsage)
		return nil
	}
	fmt.Fprint(cio.errOut, namespaceUsage)
	return fmt.Errorf("namespace: unknown subcommand %q (want label or list)", args[0])
}

func namespaceLabel(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl namespace label", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	conn := connFlags(fs)
	overwrite := fs.Bool("overwrite", false, "replace the value of a label that has one")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return errors.New("namespace label: give the namespace and at least one KEY=VALUE or KEY-")
	}
	name := pos[0]
	if err := checkNamespace(name); err != nil {
		return fmt.Errorf("namespace label: %w", err)
	}
	set := map[string]string{}
	var remove []string
	for _, a := range pos[1:] {
		if k, v, ok := strings.Cut(a, "="); ok {
			set[k] = v
		} else if k, ok := strings.CutSuffix(a, "-"); ok && k != "" {
			remove = append(remove, k)
		} else {
			return fmt.Errorf("namespace label: %q is neither KEY=VALUE nor KEY-", a)
		}
	}
	for _, k := range remove {
		if _, ok := set[k]; ok {
			return fmt.Errorf("namespace label: label %q both set and removed", k)
		}
	}
	if errs := policy.ValidateNamespace(policy.Namespace{Name: name, Labels: set}); errs != nil {
		return fmt.Errorf("namespace label: invalid:\n%s", fieldErrors(errs))
	}
	st, closeStore, err := conn.open(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	labels, err := st.LabelNamespace(ctx, name, set, remove, *overwrite)
	if err != nil {
		return conn.explain(fmt.Errorf("namespace label: %w", err))
	}
	fmt.Fprintf(cio.out, "namespace %s labeled: %s\n", name, labelText(labels))
	return nil
}

func labelText(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + l[k]
	}
	return strings.Join(keys, ",")
}

func namespaceList(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl namespace list", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	conn := connFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("namespace list: unexpected arguments %q", fs.Args())
	}
	st, closeStore, err := conn.open(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	view, err := subnetetcd.NewPolicySource(st).ListPolicies(ctx)
	if err != nil {
		return conn.explain(fmt.Errorf("namespace list: %w", err))
	}
	rejected := map[string]bool{}
	for _, r := range view.Rejected {
		if strings.HasPrefix(r.Key, st.NamespacesPrefix()) {
			rejected[r.Key] = true
			fmt.Fprintf(cio.errOut, "rejected %s: %v\n  (weftd keeps its last valid labels; without them, only %s)\n", r.Key, r.Err, policy.NamespaceNameLabel)
		}
	}
	if len(view.Namespaces) == 0 {
		fmt.Fprintf(cio.out, "no namespace labels under %s\n", st.NamespacesPrefix())
		return nil
	}
	tw := tabwriter.NewWriter(cio.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tLABELS")
	for _, ns := range view.Namespaces {
		if rejected[st.NamespaceKey(ns.Name)] {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\n", ns.Name, labelText(ns.Labels))
	}
	return tw.Flush()
}
