// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/daemon"
	"github.com/weftnet/weft/subnet"
)

const (
	manifestFile     = "weft.yaml"
	kubeManifestFile = "weft-kube.yaml"
	dockerfile       = "../docker/Dockerfile"
	exampleNetConfig = "../network-config.json"
	exampleConflist  = "../cni/10-weft.conflist"
	namespace        = "weft-system"
	conflistKey      = "10-weft.conflist"
	netConfigKey     = "network-config.json"
	etcdEndpointsKey = "etcd-endpoints"
	installerPath    = "/usr/local/bin/weft-install-cni"
	// tokenDir is where client-go's in-cluster config reads the pod's
	// ServiceAccount token, CA and namespace.
	tokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// manifests are the DaemonSet manifests: weft.yaml (etcd mode) and
// weft-kube.yaml (Kubernetes mode, kube set).
var manifests = []struct {
	file string
	kube bool
}{{manifestFile, false}, {kubeManifestFile, true}}

// manifest is the decoded weft.yaml.
type manifest struct {
	Namespaces []*corev1.Namespace
	ConfigMaps []*corev1.ConfigMap
	DaemonSets []*appsv1.DaemonSet
}

// decodeStrict converts one YAML document to JSON and decodes it into v,
// failing on fields v's type does not have.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return fmt.Errorf("yaml to json: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the object")
	}
	return nil
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// decodeManifest decodes every YAML document of text by its apiVersion and
// kind. Unknown kinds and unknown fields are errors.
func decodeManifest(text []byte) (*manifest, error) {
	m := &manifest{}
	for i, doc := range docSeparator.Split(string(text), -1) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if head.Kind == "" && strings.TrimSpace(stripComments(doc)) == "" {
			continue // comments only
		}
		var err error
		switch head.APIVersion + " " + head.Kind {
		case "v1 Namespace":
			o := &corev1.Namespace{}
			err = decodeStrict([]byte(doc), o)
			m.Namespaces = append(m.Namespaces, o)
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			err = decodeStrict([]byte(doc), o)
			m.ConfigMaps = append(m.ConfigMaps, o)
		case "apps/v1 DaemonSet":
			o := &appsv1.DaemonSet{}
			err = decodeStrict([]byte(doc), o)
			m.DaemonSets = append(m.DaemonSets, o)
		default:
			err = fmt.Errorf("unexpected apiVersion/kind %q %q", head.APIVersion, head.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, head.Kind, err)
		}
	}
	return m, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// env returns the container's environment as name → value, with the
// downward API fields replaced by sample values.
func env(c *corev1.Container, cms map[string]*corev1.ConfigMap) (map[string]string, []string) {
	out := map[string]string{}
	var bad []string
	samples := map[string]string{"spec.nodeName": "node-1", "status.hostIP": "198.18.0.11"}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			v, ok := samples[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				bad = append(bad, fmt.Sprintf("%s: %s: unexpected downward API field %q", c.Name, e.Name, e.ValueFrom.FieldRef.FieldPath))
			}
			out[e.Name] = v
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, ok := cms[ref.Name]
			if !ok {
				bad = append(bad, fmt.Sprintf("%s: %s: ConfigMap %q is not in the manifest", c.Name, e.Name, ref.Name))
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				bad = append(bad, fmt.Sprintf("%s: %s: ConfigMap %q has no key %q", c.Name, e.Name, ref.Name, ref.Key))
			}
			out[e.Name] = v
		default:
			bad = append(bad, fmt.Sprintf("%s: %s: unexpected valueFrom", c.Name, e.Name))
		}
	}
	return out, bad
}

func container(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// hostPathMount returns the path at which c mounts the hostPath volume
// of host path p (and the volume), or "" when it does not.
func hostPathMount(spec *corev1.PodSpec, c *corev1.Container, p string) (string, *corev1.Volume) {
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if v.HostPath == nil || v.HostPath.Path != p {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name && m.SubPath == "" {
				return m.MountPath, v
			}
		}
	}
	return "", nil
}

// mountOf returns the mount of c whose directory holds file, and its volume.
func mountOf(spec *corev1.PodSpec, c *corev1.Container, file string) (*corev1.VolumeMount, *corev1.Volume) {
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if filepath.Dir(file) != m.MountPath {
			continue
		}
		for j := range spec.Volumes {
			if spec.Volumes[j].Name == m.Name {
				return m, &spec.Volumes[j]
			}
		}
	}
	return nil, nil
}

// imageFiles returns the destinations of the COPY instructions of the
// Dockerfile's last stage: the files the image holds.
func imageFiles(dockerfileText string) []string {
	stages := regexp.MustCompile(`(?mi)^FROM\s`).Split(dockerfileText, -1)
	last := stages[len(stages)-1]
	var files []string
	for _, line := range strings.Split(last, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.EqualFold(f[0], "COPY") {
			continue
		}
		var args []string
		for _, a := range f[1:] {
			if !strings.HasPrefix(a, "--") {
				args = append(args, a)
			}
		}
		dst := args[len(args)-1]
		if strings.HasSuffix(dst, "/") {
			for _, src := range args[:len(args)-1] {
				files = append(files, dst+filepath.Base(src))
			}
		} else {
			files = append(files, dst)
		}
	}
	return files
}

// problems checks the essentials of the decoded manifest. Every problem
// found is returned; none means the manifest is right.
func problems(m *manifest, kube bool, dockerfileText string, exampleConfig, exampleCNI []byte) []string {
	var bad []string
	add := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }

	if len(m.Namespaces) != 1 || m.Namespaces[0].Name != namespace {
		add("want one Namespace %q", namespace)
	}
	cms := map[string]*corev1.ConfigMap{}
	for _, cm := range m.ConfigMaps {
		cms[cm.Name] = cm
		if cm.Namespace != namespace {
			add("ConfigMap %s: namespace %q, want %q", cm.Name, cm.Namespace, namespace)
		}
	}
	if len(m.DaemonSets) != 1 {
		add("want one DaemonSet, got %d", len(m.DaemonSets))
		return bad
	}
	ds := m.DaemonSets[0]
	if ds.Namespace != namespace {
		add("DaemonSet namespace %q, want %q", ds.Namespace, namespace)
	}
	spec := &ds.Spec.Template.Spec

	// Scheduling and rollout.
	if !spec.HostNetwork {
		add("hostNetwork must be true")
	}
	if spec.PriorityClassName != "system-node-critical" {
		add("priorityClassName %q, want system-node-critical", spec.PriorityClassName)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool {
		return t.Operator == corev1.TolerationOpExists && t.Key == "" && t.Effect == ""
	}) {
		add("tolerations must include {operator: Exists} (all taints)")
	}
	if spec.DNSPolicy != corev1.DNSDefault {
		add("dnsPolicy %q, want Default (cluster DNS needs the pod network)", spec.DNSPolicy)
	}
	us := ds.Spec.UpdateStrategy
	if us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate == nil || us.RollingUpdate.MaxUnavailable == nil || us.RollingUpdate.MaxUnavailable.String() != "1" {
		add("updateStrategy must be RollingUpdate with maxUnavailable 1")
	}
	if sel := ds.Spec.Selector; sel == nil || !cmp.Equal(sel.MatchLabels, ds.Spec.Template.Labels) {
		add("selector must match the template's labels")
	}

	// The ConfigMap's contents parse with weft's own parsers.
	cm := cms["weft-config"]
	if cm == nil {
		add("ConfigMap weft-config is missing")
		return bad
	}
	nc, err := subnet.ParseConfig([]byte(cm.Data[netConfigKey]))
	if err != nil {
		add("ConfigMap %s: %v", netConfigKey, err)
	} else if ex, err := subnet.ParseConfig(exampleConfig); err != nil {
		add("%s: %v", exampleNetConfig, err)
	} else if !cmp.Equal(nc, ex, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		add("ConfigMap %s differs from %s", netConfigKey, exampleNetConfig)
	}
	cl, err := libcni.ConfListFromBytes([]byte(cm.Data[conflistKey]))
	if err != nil {
		add("ConfigMap %s: %v", conflistKey, err)
	} else if len(cl.Plugins) == 0 || cl.Plugins[0].Network.Type != "weft" {
		add("ConfigMap %s: the first plugin must be weft", conflistKey)
	} else {
		// libcni hands each plugin its entry with the list's name and
		// cniVersion; so do we.
		var entry map[string]any
		_ = json.Unmarshal(cl.Plugins[0].Bytes, &entry)
		entry["name"], entry["cniVersion"] = cl.Name, cl.CNIVersion
		b, _ := json.Marshal(entry)
		if _, err := cni.ParseConfig(b); err != nil {
			add("ConfigMap %s: weft entry: %v", conflistKey, err)
		}
	}
	// The DaemonSet installs the same conflist as the repository's example
	// (which the CNI plugin's tests run through libcni).
	var got, want any
	if err := json.Unmarshal([]byte(cm.Data[conflistKey]), &got); err != nil {
		add("ConfigMap %s: %v", conflistKey, err)
	} else if err := json.Unmarshal(exampleCNI, &want); err != nil {
		add("%s: %v", exampleConflist, err)
	} else if diff := cmp.Diff(want, got); diff != "" {
		add("ConfigMap %s differs from %s (-example +ConfigMap):\n%s", conflistKey, exampleConflist, diff)
	}
	if !kube && cm.Data[etcdEndpointsKey] == "" {
		add("ConfigMap key %s is empty", etcdEndpointsKey)
	}

	files := imageFiles(dockerfileText)
	inImage := func(who, p string) {
		if !slices.Contains(files, p) {
			add("%s: %s is not in the image (Dockerfile copies %v)", who, p, files)
		}
	}

	// weftd.
	c := container(spec.Containers, "weftd")
	if c == nil {
		add("container weftd is missing")
		return bad
	}
	if len(c.Command) == 0 {
		add("weftd: no command")
	} else {
		inImage("weftd", c.Command[0])
	}
	sc := c.SecurityContext
	switch {
	case sc == nil || sc.Capabilities == nil:
		add("weftd: securityContext.capabilities missing")
	default:
		if sc.Privileged != nil && *sc.Privileged {
			add("weftd must not be privileged")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			add("weftd: allowPrivilegeEscalation must be false")
		}
		if got := fmt.Sprint(sc.Capabilities.Add); got != "[NET_ADMIN NET_RAW]" {
			add("weftd: capabilities.add %s, want [NET_ADMIN NET_RAW]", got)
		}
		if got := fmt.Sprint(sc.Capabilities.Drop); got != "[ALL]" {
			add("weftd: capabilities.drop %s, want [ALL]", got)
		}
	}

	// weftd's configuration: the manifest's args and WEFTD_ variables must
	// parse and validate as weftd would.
	vars, envBad := env(c, cms)
	bad = append(bad, envBad...)
	fs, cfg := daemon.NewFlagSet("weftd")
	for name := range vars {
		if strings.HasPrefix(name, daemon.EnvPrefix) && fs.Lookup(strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, daemon.EnvPrefix), "_", "-"))) == nil {
			add("weftd: %s is not a weftd flag's variable", name)
		}
	}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	if err := daemon.ParseFlags(fs, c.Args, lookup); err != nil {
		add("weftd: flags: %v", err)
	} else if err := cfg.Validate(); err != nil {
		add("weftd: config: %v", err)
	}
	if cfg.LogFormat != "json" {
		add("weftd: log format %q, want json", cfg.LogFormat)
	}
	nodeNameVar := daemon.EnvName("node-name")
	if kube {
		nodeNameVar = daemon.NodeNameEnv
	}
	if nn := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == nodeNameVar }); nn < 0 ||
		c.Env[nn].ValueFrom == nil || c.Env[nn].ValueFrom.FieldRef == nil || c.Env[nn].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		add("weftd: %s must come from the downward API (spec.nodeName)", nodeNameVar)
	}
	if cfg.Kube.SubnetMgr != kube {
		add("weftd: --kube-subnet-mgr is %t, want %t in this manifest", cfg.Kube.SubnetMgr, kube)
	}
	bad = append(bad, apiAccessProblems(spec, kube, cfg, cms)...)

	// Probes must reach weftd's HTTP server: same port, and the host
	// weftd binds (the kubelet probes from the node's namespace).
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		add("weftd: --http-addr %q: %v", cfg.HTTPAddr, err)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"startupProbe", c.StartupProbe, "/healthz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			add("weftd: %s must be an httpGet probe", p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			add("weftd: %s path %q, want %q", p.name, g.Path, p.path)
		}
		if g.Port.String() != port {
			add("weftd: %s port %s, but weftd listens on %s", p.name, g.Port.String(), cfg.HTTPAddr)
		}
		if host != "" && host != "0.0.0.0" && host != "::" && g.Host != host {
			add("weftd: %s host %q, but weftd listens on %s", p.name, g.Host, cfg.HTTPAddr)
		}
	}

	// Memory: the soft Go limit must sit well below the hard limit.
	lim, ok := c.Resources.Limits[corev1.ResourceMemory]
	switch {
	case !ok:
		add("weftd: no memory limit")
	case cfg.MemoryLimit == 0 || float64(cfg.MemoryLimit) > 0.8*float64(lim.Value()):
		add("weftd: --memory-limit %d bytes must be set and at most 80%% of the memory limit %s", cfg.MemoryLimit, lim.String())
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		add("weftd: no memory request")
	}
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		add("weftd: no cpu request")
	}

	// Host paths weftd needs, mounted where weftd expects them.
	for _, h := range []struct {
		path string
		typ  corev1.HostPathType
	}{
		{"/run/weft", corev1.HostPathDirectoryOrCreate},
		{"/var/lib/weft", corev1.HostPathDirectoryOrCreate},
		{"/var/run/wireguard", corev1.HostPathDirectoryOrCreate},
		{"/dev/net/tun", corev1.HostPathCharDev},
	} {
		at, v := hostPathMount(spec, c, h.path)
		if at != h.path {
			add("weftd: host path %s must be mounted at the same path (got %q)", h.path, at)
			continue
		}
		if v.HostPath.Type == nil || *v.HostPath.Type != h.typ {
			add("weftd: host path %s must have type %s", h.path, h.typ)
		}
	}
	if filepath.Dir(cfg.SubnetFile) != "/run/weft" {
		add("weftd: subnet file %s is not on the /run/weft host path", cfg.SubnetFile)
	}
	if cfg.StateDir != "/var/lib/weft" {
		add("weftd: state dir %s is not the /var/lib/weft host path", cfg.StateDir)
	}
	// Secrets: the files weftd reads are keys of mounted Secrets.
	secretFiles := []struct{ flag, path string }{{"gossip-key-file", cfg.GossipKeyFile}}
	if !kube {
		secretFiles = append(secretFiles, []struct{ flag, path string }{
			{"etcd-cafile", cfg.EtcdCAFile}, {"etcd-certfile", cfg.EtcdCertFile}, {"etcd-keyfile", cfg.EtcdKeyFile},
		}...)
	}
	for _, f := range secretFiles {
		m, v := mountOf(spec, c, f.path)
		if m == nil || v.Secret == nil || m.SubPath != "" {
			add("weftd: --%s %q is not in a mounted Secret (directory mount, no subPath)", f.flag, f.path)
		}
	}

	// The init container installs the CNI binary and the conflist onto
	// the host.
	ic := container(spec.InitContainers, "install-cni")
	if ic == nil {
		add("init container install-cni is missing")
		return bad
	}
	if len(ic.Command) == 0 || ic.Command[0] != installerPath {
		add("install-cni: command %q does not run %s", ic.Command, installerPath)
	}
	inImage("install-cni", installerPath)
	ivars, ibad := env(ic, cms)
	bad = append(bad, ibad...)
	inImage("install-cni", ivars["WEFT_CNI_BIN"])
	if at, _ := hostPathMount(spec, ic, "/opt/cni/bin"); at == "" || at != ivars["WEFT_CNI_BIN_DIR"] {
		add("install-cni: WEFT_CNI_BIN_DIR %q is not where /opt/cni/bin is mounted (%q)", ivars["WEFT_CNI_BIN_DIR"], at)
	}
	if at, _ := hostPathMount(spec, ic, "/etc/cni/net.d"); at == "" || at != ivars["WEFT_CNI_CONF_DIR"] {
		add("install-cni: WEFT_CNI_CONF_DIR %q is not where /etc/cni/net.d is mounted (%q)", ivars["WEFT_CNI_CONF_DIR"], at)
	}
	if m, v := mountOf(spec, ic, ivars["WEFT_CNI_CONFLIST"]); m == nil || v.ConfigMap == nil || v.ConfigMap.Name != "weft-config" ||
		!slices.ContainsFunc(v.ConfigMap.Items, func(k corev1.KeyToPath) bool {
			return k.Key == conflistKey && k.Path == filepath.Base(ivars["WEFT_CNI_CONFLIST"])
		}) {
		add("install-cni: WEFT_CNI_CONFLIST %q is not the ConfigMap's %s", ivars["WEFT_CNI_CONFLIST"], conflistKey)
	}
	if filepath.Base(ivars["WEFT_CNI_BIN"]) != "weft" {
		add("install-cni: the CNI binary must be called weft (the conflist's type)")
	}
	return bad
}

// apiAccessProblems checks how the pod reaches the Kubernetes API. In
// Kubernetes mode weftd alone gets a token of the ServiceAccount weftd,
// bound to its pod, from a projected volume where client-go's in-cluster
// config reads it, and the network config's ConfigMap is the manifest's;
// in etcd mode no container gets a token.
func apiAccessProblems(spec *corev1.PodSpec, kube bool, cfg *daemon.Config, cms map[string]*corev1.ConfigMap) []string {
	var bad []string
	add := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	if a := spec.AutomountServiceAccountToken; a == nil || *a {
		add("automountServiceAccountToken must be false (weftd's token comes from its own projected volume)")
	}
	tokenMounts := map[string]string{} // container → volume
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		for _, m := range c.VolumeMounts {
			for _, v := range spec.Volumes {
				if v.Name == m.Name && v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(p corev1.VolumeProjection) bool { return p.ServiceAccountToken != nil }) {
					tokenMounts[c.Name] = m.MountPath
				}
			}
		}
	}
	if !kube {
		if len(tokenMounts) > 0 || spec.ServiceAccountName != "" {
			add("etcd mode: no container needs a ServiceAccount token (mounted in %v, serviceAccountName %q)", tokenMounts, spec.ServiceAccountName)
		}
		return bad
	}
	if spec.ServiceAccountName != "weftd" {
		add("serviceAccountName %q, want weftd (weft-rbac.yaml)", spec.ServiceAccountName)
	}
	if at, ok := tokenMounts["weftd"]; !ok || at != tokenDir {
		add("weftd: the projected ServiceAccount token must be mounted at %s (got %q)", tokenDir, at)
	}
	if len(tokenMounts) != 1 {
		add("only weftd may get the token, mounted in %v", tokenMounts)
	}
	for _, v := range spec.Volumes {
		if v.Projected == nil || !slices.ContainsFunc(v.Projected.Sources, func(p corev1.VolumeProjection) bool { return p.ServiceAccountToken != nil }) {
			continue
		}
		var files []string
		for _, p := range v.Projected.Sources {
			switch {
			case p.ServiceAccountToken != nil:
				files = append(files, p.ServiceAccountToken.Path)
				if p.ServiceAccountToken.Audience != "" {
					add("the token's audience must be the API server's (none given), not %q", p.ServiceAccountToken.Audience)
				}
			case p.ConfigMap != nil && p.ConfigMap.Name == "kube-root-ca.crt":
				for _, k := range p.ConfigMap.Items {
					files = append(files, k.Path)
				}
			case p.DownwardAPI != nil:
				for _, k := range p.DownwardAPI.Items {
					files = append(files, k.Path)
				}
			}
		}
		slices.Sort(files)
		if !slices.Equal(files, []string{"ca.crt", "namespace", "token"}) {
			add("volume %s holds %v, want ca.crt, namespace and token (what the in-cluster config reads)", v.Name, files)
		}
	}
	if cfg.Kube.Kubeconfig != "" {
		add("weftd: --kubeconfig %q: in a pod weftd uses the in-cluster config", cfg.Kube.Kubeconfig)
	}
	if cfg.Kube.NetConfFile != "" {
		add("weftd: --net-conf: the manifest gives the network config in its ConfigMap")
	}
	if cm := cms[cfg.Kube.ConfigName]; cm == nil || cm.Namespace != cfg.Kube.ConfigNamespace || cm.Data[netConfigKey] == "" {
		add("weftd reads the network config from ConfigMap %s/%s key %s, which the manifest does not hold", cfg.Kube.ConfigNamespace, cfg.Kube.ConfigName, netConfigKey)
	}
	return bad
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestManifest decodes the manifests strictly and checks their
// essentials; the two DaemonSets must install the CNI plugin and run
// weftd with the same privileges (the privilege and installer tests run
// weft.yaml's).
func TestManifest(t *testing.T) {
	specs := map[string]*corev1.PodSpec{}
	for _, mf := range manifests {
		m, err := decodeManifest(readFile(t, mf.file))
		if err != nil {
			t.Fatalf("%s: %v", mf.file, err)
		}
		if p := problems(m, mf.kube, string(readFile(t, dockerfile)), readFile(t, exampleNetConfig), readFile(t, exampleConflist)); len(p) > 0 {
			t.Errorf("%s:\n%s", mf.file, strings.Join(p, "\n"))
		}
		if len(m.DaemonSets) == 1 {
			specs[mf.file] = &m.DaemonSets[0].Spec.Template.Spec
		}
	}
	etcd, kube := specs[manifestFile], specs[kubeManifestFile]
	if etcd == nil || kube == nil {
		return
	}
	if diff := cmp.Diff(etcd.InitContainers, kube.InitContainers); diff != "" {
		t.Errorf("install-cni differs between %s and %s (-etcd +kube):\n%s", manifestFile, kubeManifestFile, diff)
	}
	ew, kw := container(etcd.Containers, "weftd"), container(kube.Containers, "weftd")
	if ew == nil || kw == nil {
		return
	}
	if diff := cmp.Diff(ew.SecurityContext, kw.SecurityContext); diff != "" {
		t.Errorf("weftd's securityContext differs between %s and %s (-etcd +kube):\n%s", manifestFile, kubeManifestFile, diff)
	}
}

// TestManifestChecksCanFail feeds broken manifests and expects each break
// to be reported.
func TestManifestChecksCanFail(t *testing.T) {
	df := string(readFile(t, dockerfile))
	for _, tc := range []struct {
		name, old, new, want string
		kube                 bool // edit weft-kube.yaml instead of weft.yaml
	}{
		{"unknown field", "      hostNetwork: true\n", "      hostNetwork: true\n      hostNetwrk: true\n", `unknown field "hostNetwrk"`, false},
		{"no host network", "      hostNetwork: true\n", "      hostNetwork: false\n", "hostNetwork must be true", false},
		{"privileged", "            privileged: false\n", "            privileged: true\n", "must not be privileged", false},
		{"capability dropped", `add: ["NET_ADMIN", "NET_RAW"]`, `add: ["NET_ADMIN"]`, "capabilities.add [NET_ADMIN]", false},
		{"probe on the wrong port", "              port: 9950\n              path: /readyz", "              port: 9951\n              path: /readyz", "readinessProbe port 9951", false},
		{"probe on the node address", "              host: 127.0.0.1\n              port: 9950\n              path: /healthz\n            periodSeconds: 10", "              port: 9950\n              path: /healthz\n            periodSeconds: 10", `livenessProbe host ""`, false},
		{"unknown weftd variable", "            - name: WEFTD_MEMORY_LIMIT", "            - name: WEFTD_MEMORY_LIMITS", "WEFTD_MEMORY_LIMITS is not a weftd flag", false},
		{"soft limit above the hard limit", "              value: 160MiB", "              value: 512MiB", "--memory-limit 536870912 bytes", false},
		{"bad flag value", "--log-format=json", "--log-format=xml", `"xml" is not text or json`, false},
		{"state not mounted", "              mountPath: /var/lib/weft\n", "              mountPath: /var/lib/weft2\n", "host path /var/lib/weft must be mounted", false},
		{"bad network config", `"Network": "10.244.0.0/16",`, `"Network": "10.244.0.0/33",`, "ConfigMap network-config.json", false},
		{"conflist without weft", `"type": "weft"`, `"type": "bridge"`, "the first plugin must be weft", false},
		{"conflist unlike the example", `"cniVersion": "1.0.0",`, `"cniVersion": "0.4.0",`, "differs from ../cni/10-weft.conflist", false},
		{"init copies elsewhere", "              value: /host/opt/cni/bin", "              value: /host/opt/cni/bin2", "WEFT_CNI_BIN_DIR", false},
		{"no tolerations", "        - operator: Exists\n", "        - operator: Exists\n          key: foo\n", "tolerations must include", false},
		{"etcd mode with a token", "      automountServiceAccountToken: false\n", "      automountServiceAccountToken: true\n", "automountServiceAccountToken must be false", false},
		{"kube: no kube-subnet-mgr", "              value: \"true\"\n", "              value: \"false\"\n", "--kube-subnet-mgr is false", true},
		{"kube: another ServiceAccount", "serviceAccountName: weftd", "serviceAccountName: default", `serviceAccountName "default"`, true},
		{"kube: token elsewhere", "              mountPath: /var/run/secrets/kubernetes.io/serviceaccount\n", "              mountPath: /var/run/secrets/weft\n", "token must be mounted at", true},
		{"kube: token for install-cni too", "            - name: cni-bin\n              mountPath: /host/opt/cni/bin\n", "            - name: cni-bin\n              mountPath: /host/opt/cni/bin\n            - name: kube-api-access\n              mountPath: /var/run/secrets/kubernetes.io/serviceaccount\n", "only weftd may get the token", true},
		{"kube: automounted token", "      automountServiceAccountToken: false\n", "      automountServiceAccountToken: true\n", "automountServiceAccountToken must be false", true},
		{"kube: token audience", "                  path: token\n", "                  path: token\n                  audience: vault\n", `audience must be the API server's`, true},
		{"kube: no CA", "                  name: kube-root-ca.crt\n", "                  name: kube-root-ca\n", "want ca.crt, namespace and token", true},
		{"kube: node name from the host name", "            - name: NODE_NAME\n", "            - name: HOSTNAME\n", "NODE_NAME must come from the downward API", true},
		{"kube: no ConfigMap", "  network-config.json: |", "  network-config.jsn: |", "ConfigMap weft-system/weft-config key network-config.json", true},
		{"kube: etcd Secret", "              value: /etc/weft/gossip/gossip.key\n", "              value: /etc/weft/etcd/gossip.key\n", "--gossip-key-file \"/etc/weft/etcd/gossip.key\" is not in a mounted Secret", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := manifestFile
			if tc.kube {
				file = kubeManifestFile
			}
			orig := string(readFile(t, file))
			text := strings.Replace(orig, tc.old, tc.new, 1)
			if text == orig {
				t.Fatalf("the edit %q did not apply", tc.old)
			}
			m, err := decodeManifest([]byte(text))
			var got string
			if err != nil {
				got = err.Error()
			} else {
				got = strings.Join(problems(m, tc.kube, df, readFile(t, exampleNetConfig), readFile(t, exampleConflist)), "\n")
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("want a problem containing %q, got:\n%s", tc.want, got)
			}
		})
	}
	t.Run("image lacks the installer", func(t *testing.T) {
		m, err := decodeManifest(readFile(t, manifestFile))
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(problems(m, false, strings.ReplaceAll(df, "weft-install-cni", "weft-install"), readFile(t, exampleNetConfig), readFile(t, exampleConflist)), "\n")
		if !strings.Contains(got, installerPath+" is not in the image") {
			t.Errorf("missing installer not reported:\n%s", got)
		}
	})
}

// TestInstallCNI runs the init container's installer (weft-install-cni,
// built from the module) as the manifest configures it, with the
// container's paths moved under a temporary root:
// the CNI binary and the ConfigMap's conflist must land in the host
// directories, executable and byte for byte, and a second run (a restarted
// pod) must replace them in place.
func TestInstallCNI(t *testing.T) {
	installer := filepath.Join(t.TempDir(), "weft-install-cni")
	if out, err := exec.Command("go", "build", "-o", installer, "../../cni/cmd/weft-install-cni").CombinedOutput(); err != nil {
		t.Fatalf("go build weft-install-cni: %v\n%s", err, out)
	}
	m, err := decodeManifest(readFile(t, manifestFile))
	if err != nil {
		t.Fatal(err)
	}
	spec := &m.DaemonSets[0].Spec.Template.Spec
	ic := container(spec.InitContainers, "install-cni")
	cms := map[string]*corev1.ConfigMap{}
	for _, cm := range m.ConfigMaps {
		cms[cm.Name] = cm
	}
	vars, bad := env(ic, cms)
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	root := t.TempDir()
	in := func(p string) string { return filepath.Join(root, p) }
	binary := []byte("\x7fELF weft plugin stand-in")
	if len(vars) != 4 {
		t.Fatalf("install-cni sets %v, want the 4 WEFT_CNI_ variables weft-install-cni reads", vars)
	}
	conflist := []byte(cms["weft-config"].Data[conflistKey])
	for p, data := range map[string][]byte{vars["WEFT_CNI_BIN"]: binary, vars["WEFT_CNI_CONFLIST"]: conflist} {
		if err := os.MkdirAll(filepath.Dir(in(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(in(p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{vars["WEFT_CNI_BIN_DIR"], vars["WEFT_CNI_CONF_DIR"]} {
		if err := os.MkdirAll(in(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func() {
		t.Helper()
		cmd := exec.Command(installer)
		for k, v := range vars {
			cmd.Env = append(cmd.Env, k+"="+in(v))
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("weft-install-cni: %v\n%s", err, out)
		}
		t.Logf("weft-install-cni:\n%s", out)
	}
	check := func() {
		t.Helper()
		gotBin := in(filepath.Join(vars["WEFT_CNI_BIN_DIR"], "weft"))
		gotConf := in(filepath.Join(vars["WEFT_CNI_CONF_DIR"], conflistKey))
		for p, want := range map[string][]byte{gotBin: binary, gotConf: conflist} {
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: content differs", p)
			}
		}
		if st, err := os.Stat(gotBin); err != nil || st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable: %v", gotBin, err)
		}
		for _, d := range []string{vars["WEFT_CNI_BIN_DIR"], vars["WEFT_CNI_CONF_DIR"]} {
			ents, _ := os.ReadDir(in(d))
			if len(ents) != 1 {
				t.Errorf("%s holds %d entries, want 1 (no temporary files left)", d, len(ents))
			}
		}
	}
	run()
	check()
	binary = []byte("\x7fELF weft plugin, newer")
	if err := os.WriteFile(in(vars["WEFT_CNI_BIN"]), binary, 0o644); err != nil {
		t.Fatal(err)
	}
	run()
	check()
}
