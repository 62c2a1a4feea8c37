// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"errors"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// apiScheme knows the only kinds the store decodes: core/v1 and
// networking/v1 and the API's own list, status and watch kinds. client-go's
// generated clients decode with its scheme of every API group of
// Kubernetes, each registered when the binary starts: at 5000 peers that
// was several MiB of weftd's resident text (docs/scale.md).
var (
	apiScheme = runtime.NewScheme()
	apiCodecs = serializer.NewCodecFactory(apiScheme)
)

func init() {
	metav1.AddToGroupVersion(apiScheme, schema.GroupVersion{Version: "v1"})
	utilruntime.Must(corev1.AddToScheme(apiScheme))
	utilruntime.Must(networkingv1.AddToScheme(apiScheme))
}

// clients are REST clients of the two API groups the store reads and
// writes (core under /api, networking.k8s.io under /apis), sharing one
// HTTP client and one rate limit.
type clients struct {
	core, networking *rest.RESTClient
}

func newClients(rc *rest.Config, hc *http.Client) (*clients, error) {
	if rc.RateLimiter == nil && rc.QPS > 0 {
		// One rate limit for both, as client-go's clientset shares one.
		if rc.Burst <= 0 {
			return nil, errors.New("burst must be above 0 when QPS is set and RateLimiter is not")
		}
		rc = rest.CopyConfig(rc)
		rc.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(rc.QPS, rc.Burst)
	}
	core, err := restClient(rc, hc, "/api", corev1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	networking, err := restClient(rc, hc, "/apis", networkingv1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	return &clients{core: core, networking: networking}, nil
}

func restClient(rc *rest.Config, hc *http.Client, apiPath string, gv schema.GroupVersion) (*rest.RESTClient, error) {
	c := rest.CopyConfig(rc)
	c.APIPath = apiPath
	c.GroupVersion = &gv
	c.NegotiatedSerializer = apiCodecs.WithoutConversion()
	return rest.RESTClientForConfigAndClient(c, hc)
}

// getNode reads the Node name.
func (c *clients) getNode(ctx context.Context, name string) (*corev1.Node, error) {
	n := &corev1.Node{}
	return n, c.core.Get().Resource("nodes").Name(name).Do(ctx).Into(n)
}

// listNodes lists every Node.
func (c *clients) listNodes(ctx context.Context) (*corev1.NodeList, error) {
	l := &corev1.NodeList{}
	return l, c.core.Get().Resource("nodes").Do(ctx).Into(l)
}

// patchNodeStatus patches the status of the Node name.
func (c *clients) patchNodeStatus(ctx context.Context, name string, pt types.PatchType, patch []byte, opts metav1.PatchOptions) error {
	return c.core.Patch(pt).Resource("nodes").Name(name).SubResource("status").
		VersionedParams(&opts, metav1.ParameterCodec).Body(patch).Do(ctx).Error()
}

// getConfigMap reads the ConfigMap namespace/name.
func (c *clients) getConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	return cm, c.core.Get().Namespace(namespace).Resource("configmaps").Name(name).Do(ctx).Into(cm)
}

// getPod reads the Pod namespace/name.
func (c *clients) getPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	return p, c.core.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(p)
}

// listPods lists the Pods of every namespace that opts selects.
func (c *clients) listPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	l := &corev1.PodList{}
	return l, c.core.Get().Resource("pods").VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(l)
}

// get reads the absolute path path (the API server's /readyz, a group's
// discovery document) into into, or discards the answer when into is nil.
func (c *clients) get(ctx context.Context, into runtime.Object, path ...string) error {
	r := c.core.Get().AbsPath(path...)
	if into == nil {
		_, err := r.DoRaw(ctx)
		return err
	}
	return r.Do(ctx).Into(into)
}
