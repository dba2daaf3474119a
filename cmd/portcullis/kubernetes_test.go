package main

// The Kubernetes manifests in examples/kubernetes (#18), checked offline: every document is
// decoded strictly with Kubernetes's own API types (an unknown or misspelt field fails), the
// objects agree with each other and with the configuration they carry, and that configuration
// is served by the real binary laid out as the kubelet lays out a ConfigMap volume, answering
// the probes and reloading when the ConfigMap's ..data symlink is swapped.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

// k8sObjects are the decoded manifests, by kind and name.
type k8sObjects struct {
	configMaps   map[string]*corev1.ConfigMap
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	pdbs         map[string]*policyv1.PodDisruptionBudget
	policies     map[string]*networkingv1.NetworkPolicy
}

func loadK8sManifests(t *testing.T, files ...string) *k8sObjects {
	t.Helper()
	o := &k8sObjects{configMaps: map[string]*corev1.ConfigMap{}, deployments: map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{}, services: map[string]*corev1.Service{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, policies: map[string]*networkingv1.NetworkPolicy{}}
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			strict := func(apiVersion string, into any) {
				t.Helper()
				if tm.APIVersion != apiVersion {
					t.Fatalf("%s: %s has apiVersion %s, want %s", f, tm.Kind, tm.APIVersion, apiVersion)
				}
				if err := yaml.UnmarshalStrict(doc, into); err != nil {
					t.Fatalf("%s: document %d (%s): %v", f, i, tm.Kind, err)
				}
			}
			switch tm.Kind {
			case "ConfigMap":
				var v corev1.ConfigMap
				strict("v1", &v)
				o.configMaps[v.Name] = &v
			case "Deployment":
				var v appsv1.Deployment
				strict("apps/v1", &v)
				o.deployments[v.Name] = &v
			case "StatefulSet":
				var v appsv1.StatefulSet
				strict("apps/v1", &v)
				o.statefulSets[v.Name] = &v
			case "Service":
				var v corev1.Service
				strict("v1", &v)
				o.services[v.Name] = &v
			case "PodDisruptionBudget":
				var v policyv1.PodDisruptionBudget
				strict("policy/v1", &v)
				o.pdbs[v.Name] = &v
			case "NetworkPolicy":
				var v networkingv1.NetworkPolicy
				strict("networking.k8s.io/v1", &v)
				o.policies[v.Name] = &v
			default:
				t.Fatalf("%s: document %d: kind %q is not checked here", f, i, tm.Kind)
			}
		}
	}
	return o
}

// selects reports whether selector picks pods with podLabels.
func selects(t *testing.T, selector *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

// servicePortsResolve checks every targetPort of svc names a port of the pods it selects.
func servicePortsResolve(t *testing.T, svc *corev1.Service, pod *corev1.PodTemplateSpec) {
	t.Helper()
	if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, pod.Labels) {
		t.Errorf("service %s selects no pod of its workload", svc.Name)
	}
	for _, p := range svc.Spec.Ports {
		found := false
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				found = found || cp.Name == p.TargetPort.StrVal || cp.ContainerPort == p.TargetPort.IntVal
			}
		}
		if !found {
			t.Errorf("service %s: targetPort %s is no container port", svc.Name, p.TargetPort.String())
		}
	}
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	o := loadK8sManifests(t, "portcullis.yaml", "redis.yaml")
	dep, cm, redis := o.deployments["portcullis"], o.configMaps["portcullis-config"], o.statefulSets["redis"]
	if dep == nil || cm == nil || redis == nil || o.pdbs["portcullis"] == nil || o.services["portcullis"] == nil || o.services["redis"] == nil {
		t.Fatalf("missing objects: %+v", o)
	}
	pod := &dep.Spec.Template
	if !selects(t, dep.Spec.Selector, pod.Labels) {
		t.Error("the deployment's selector does not select its own pods")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container: %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	// The configuration the container runs is the ConfigMap's, mounted as a directory.
	i := slices.Index(c.Args, "--config")
	if len(c.Args) < 3 || c.Args[0] != "serve" || i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("args %q: want serve --config FILE", c.Args)
	}
	cfgPath := c.Args[i+1]
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
		if m.SubPath != "" {
			t.Errorf("volume %s is mounted with subPath, which never sees the updates of its source", m.Name)
		}
		if !m.ReadOnly {
			t.Errorf("volume %s is mounted writable", m.Name)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	// mountedFrom is the volume a file is in, and its key there.
	mountedFrom := func(path string) (corev1.Volume, string, bool) {
		for name, m := range mounts {
			if rel, ok := strings.CutPrefix(path, m.MountPath+"/"); ok && !strings.Contains(rel, "/") {
				v, ok := volumes[name]
				return v, rel, ok
			}
		}
		return corev1.Volume{}, "", false
	}
	v, key, ok := mountedFrom(cfgPath)
	if !ok || v.ConfigMap == nil || v.ConfigMap.Name != cm.Name || cm.Data[key] == "" {
		t.Fatalf("--config %s is not a key of ConfigMap %s mounted as a directory", cfgPath, cm.Name)
	}
	cfgYAML := cm.Data[key]

	// Every file the configuration names comes from a Secret volume (or the ConfigMap).
	dir := t.TempDir()
	cert, tlsKey := writeTestCert(t, dir)
	secretPaths := map[string]string{} // path in the pod -> file here
	for _, line := range strings.Split(cfgYAML, "\n") {
		k, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasSuffix(k, "_file") {
			continue
		}
		p := strings.TrimSpace(val)
		v, key, ok := mountedFrom(p)
		if !ok || v.Secret == nil {
			t.Errorf("%s: %s is not in a mounted Secret", k, p)
			continue
		}
		switch key {
		case "tls.crt":
			secretPaths[p] = cert
		case "tls.key":
			secretPaths[p] = tlsKey
		default:
			secretPaths[p] = writeTemp(t, dir, strings.ReplaceAll(strings.TrimPrefix(p, "/"), "/", "_"), "k8s-test-"+key+"\n")
		}
	}

	// Probes on Portcullis's own endpoints, on the port server.listen binds.
	cfgFile := writeTemp(t, dir, "as-in-configmap.yaml", cfgYAML)
	parsed, _, err := config.Load(rewriteFiles(t, cfgFile, secretPaths))
	if err != nil {
		t.Fatalf("the ConfigMap's configuration does not load: %v", err)
	}
	port := func(name string) int32 {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
		return 0
	}
	if got := fmt.Sprintf(":%d", port("https")); parsed.Server.Listen != got {
		t.Errorf("server.listen %s, container port https %s", parsed.Server.Listen, got)
	}
	if got := fmt.Sprintf(":%d", port("metrics")); parsed.Server.MetricsListen != got {
		t.Errorf("server.metrics_listen %s, container port metrics %s", parsed.Server.MetricsListen, got)
	}
	for what, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		want := "/.portcullis/healthz"
		if what == "readiness" {
			want = "/.portcullis/readyz"
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.StrVal != "https" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s probe %+v: want HTTPS GET %s on port https", what, p, want)
		}
	}

	// Draining outlasts the endpoints' removal and the server's drain.
	sleep := int64(0)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		sleep = c.Lifecycle.PreStop.Sleep.Seconds
	}
	grace := pod.Spec.TerminationGracePeriodSeconds
	if sleep == 0 || grace == nil || time.Duration(*grace-sleep)*time.Second <= parsed.Server.ShutdownTimeout.D() {
		t.Errorf("terminationGracePeriodSeconds %v must exceed preStop sleep %ds plus shutdown_timeout %v", grace, sleep, parsed.Server.ShutdownTimeout.D())
	}

	// Hardened: non-root, read-only root, no capabilities, no service account token.
	sc := c.SecurityContext
	if pod.Spec.SecurityContext == nil || pod.Spec.SecurityContext.RunAsNonRoot == nil || !*pod.Spec.SecurityContext.RunAsNonRoot ||
		sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("the pod is not hardened: %+v %+v", pod.Spec.SecurityContext, sc)
	}

	// Availability: more than one replica, a rollout that never goes below them, a budget that
	// keeps one.
	pdb := o.pdbs["portcullis"]
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 ||
		pdb.Spec.MinAvailable.IntValue() >= int(*dep.Spec.Replicas) || !selects(t, pdb.Spec.Selector, pod.Labels) {
		t.Errorf("replicas %v, PodDisruptionBudget %+v", dep.Spec.Replicas, pdb.Spec)
	}
	if ru := dep.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update %+v: want maxUnavailable 0", dep.Spec.Strategy)
	}
	servicePortsResolve(t, o.services["portcullis"], pod)
	servicePortsResolve(t, o.services["portcullis-metrics"], pod)
	servicePortsResolve(t, o.services["redis"], &redis.Spec.Template)

	// Redis: the address the configuration names, persistent, with the password Portcullis reads.
	if host, _, _ := strings.Cut(parsed.Redis.Address, ":"); o.services[host] == nil || redis.Spec.ServiceName != host {
		t.Errorf("redis.address %s is not the redis Service", parsed.Redis.Address)
	}
	rc := redis.Spec.Template.Spec.Containers[0]
	if !slices.Contains(rc.Args, "--appendonly") || len(redis.Spec.VolumeClaimTemplates) == 0 || !slices.Contains(rc.Args, "--requirepass") {
		t.Errorf("redis is not persistent or has no password: %q", rc.Args)
	}
	if ov := volumes["redis"]; ov.Secret == nil || len(rc.Env) == 0 || rc.Env[0].ValueFrom == nil ||
		rc.Env[0].ValueFrom.SecretKeyRef.Name != ov.Secret.SecretName {
		t.Errorf("redis's password and Portcullis's are not the same Secret")
	}
	for name, np := range o.policies {
		for _, rule := range np.Spec.Ingress {
			for _, from := range rule.From {
				if from.PodSelector == nil || !selects(t, from.PodSelector, pod.Labels) {
					t.Errorf("NetworkPolicy %s admits something other than Portcullis", name)
				}
			}
		}
	}
	if np := o.policies["redis-only-from-portcullis"]; np == nil || !selects(t, &np.Spec.PodSelector, redis.Spec.Template.Labels) {
		t.Error("no NetworkPolicy keeps Redis to Portcullis")
	}

	t.Run("served as the kubelet mounts it", func(t *testing.T) {
		testK8sConfigMapServe(t, cfgYAML, secretPaths)
	})
}

// rewriteFiles writes the configuration at path with each pod path replaced by its file here.
func rewriteFiles(t *testing.T, path string, files map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for from, to := range files {
		s = strings.ReplaceAll(s, from, to)
	}
	writeFile(t, path, s)
	return path
}

// testK8sConfigMapServe runs the binary on the ConfigMap's configuration (Redis and the
// listeners made this test's), in a directory laid out as the kubelet lays out a ConfigMap
// volume (portcullis.yaml -> ..data/portcullis.yaml, ..data -> a timestamped directory):
// the probes answer, with the Host the kubelet sends (the pod's address), and an update
// (a new directory, ..data swapped atomically) is applied.
func testK8sConfigMapServe(t *testing.T, cfgYAML string, files map[string]string) {
	rs := redistest.Start(t, redistest.WithPassword("k8s-test-password"))
	listen := freePort(t)
	up := upstream(t, "portal")
	for from, to := range files {
		cfgYAML = strings.ReplaceAll(cfgYAML, from, to)
		if strings.HasSuffix(from, "/redis/password") {
			writeFile(t, to, rs.Password)
		}
	}
	cfgYAML = strings.NewReplacer(`listen: ":8443"`, "listen: "+listen, `metrics_listen: ":9090"`, `metrics_listen: "off"`,
		"address: redis:6379", "address: "+rs.Addr, "http://portal.portal.svc.cluster.local:8080", up.URL).Replace(cfgYAML)
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "portcullis.yaml"), content)
	}
	version("..2026_12_07_00_00_00.1", cfgYAML)
	if err := os.Symlink("..2026_12_07_00_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/portcullis.yaml", filepath.Join(dir, "portcullis.yaml")); err != nil {
		t.Fatal(err)
	}
	startBinary(t, filepath.Join(dir, "portcullis.yaml"))
	c := tlsClient()
	for _, p := range []string{"/.portcullis/healthz", "/.portcullis/readyz"} {
		req, _ := http.NewRequest("GET", "https://"+listen+p, nil)
		req.Host = "10.244.1.17:8443" // the kubelet's Host: the pod IP
		req.Header.Set("User-Agent", "kube-probe/1.34")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("probe %s: %d %s", p, resp.StatusCode, body)
		}
	}

	// kubectl apply of a changed ConfigMap: a public route added.
	// Routes match in file order: the new one goes first.
	version("..2026_12_07_00_05_00.2", strings.Replace(cfgYAML, "routes:\n", "routes:\n  - name: status\n    path: /status\n    path_match: exact\n    upstream: "+up.URL+"\n    public: true\n", 1))
	if err := os.Symlink("..2026_12_07_00_05_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitBody(t, c, "https://"+listen+"/status", "portal GET /status")
}
