// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/subnet"
)

// Defaults of [Config].
const (
	DefaultConfigNamespace = "weft-system"
	DefaultConfigName      = "weft-config"
	// ConfigKey is the ConfigMap key holding the network config JSON.
	ConfigKey           = "network-config.json"
	DefaultCallTimeout  = 10 * time.Second
	DefaultFilePollTime = 2 * time.Second
)

// ErrCRDMissing: the WeftNode CustomResourceDefinition is not installed.
var ErrCRDMissing = errors.New("the WeftNode custom resource is not installed")

// Config configures a [Store].
type Config struct {
	// ConfigNamespace and ConfigName name the ConfigMap whose key
	// network-config.json holds the network config (defaults weft-system,
	// weft-config). Not used when NetConfFile is set.
	ConfigNamespace, ConfigName string
	// NetConfFile, when set, is a file holding the network config instead
	// (checked for changes every FilePollInterval, default 2 s).
	NetConfFile      string
	FilePollInterval time.Duration
	// CallTimeout bounds each API request (default 10 s).
	CallTimeout time.Duration
	// Log receives the store's log lines (default: discarded).
	Log logrus.FieldLogger
}

// Store is the Kubernetes-API store. It is safe for concurrent use.
type Store struct {
	cs          *clients
	dyn         dynamic.Interface
	hc          *http.Client
	cfg         Config
	log         logrus.FieldLogger
	callTimeout time.Duration
	// health is the outcome of the informers' last list or watch (see
	// health.go).
	health health

	// leases are the lease view's informers while a watcher runs them
	// (see leaseinf.go); leasesMu guards the pointer.
	leasesMu sync.Mutex
	leases   *sharedLeases

	// testHookBeforeWrite, nil outside tests, runs in UpdateRecord between
	// reading the record and writing it.
	testHookBeforeWrite func()
}

var _ subnet.Store = (*Store)(nil)

// RESTConfig returns the client config of a kubeconfig file, or the
// in-cluster config (the pod's service-account token) when path is empty.
func RESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes config (give --kubeconfig outside a pod): %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return rc, nil
}

// New returns a Store on the API server rc names. It contacts nothing.
func New(rc *rest.Config, cfg Config) (*Store, error) {
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "weftd"
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("Kubernetes client: %w", err)
	}
	cs, err := newClients(rc, hc)
	if err != nil {
		return nil, fmt.Errorf("Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfigAndClient(rc, hc)
	if err != nil {
		return nil, fmt.Errorf("Kubernetes client: %w", err)
	}
	if cfg.ConfigNamespace == "" {
		cfg.ConfigNamespace = DefaultConfigNamespace
	}
	if cfg.ConfigName == "" {
		cfg.ConfigName = DefaultConfigName
	}
	if cfg.FilePollInterval <= 0 {
		cfg.FilePollInterval = DefaultFilePollTime
	}
	log := cfg.Log
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	s := &Store{cs: cs, dyn: dyn, hc: hc, cfg: cfg, log: log.WithField("component", "subnet/kube"), callTimeout: cfg.CallTimeout}
	if s.callTimeout <= 0 {
		s.callTimeout = DefaultCallTimeout
	}
	return s, nil
}

// Close closes the store's idle connections. Calls on the Store after
// Close open new ones.
func (s *Store) Close() error {
	s.hc.CloseIdleConnections()
	return nil
}

// call derives the context of one API request.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.callTimeout)
}

// Probe asks the API server's /readyz (open to every client): it answers
// 200 only when it can serve, its etcd included.
func (s *Store) Probe(ctx context.Context) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	if err := s.cs.get(cctx, nil, "/readyz"); err != nil {
		return fmt.Errorf("probe the Kubernetes API server: %w", err)
	}
	return nil
}

// CheckCRD reports whether the API server serves WeftNodes: an error
// wrapping ErrCRDMissing (saying how to install it) when it does not, or
// the error of the request.
func (s *Store) CheckCRD(ctx context.Context) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	var list metav1.APIResourceList
	err := s.cs.get(cctx, &list, "/apis", Group, Version)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("look for the %s resource: %w", CRDName, err)
	}
	if err == nil && slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == Resource }) {
		return nil
	}
	return fmt.Errorf("%w: the API server has no %s/%s %s; install it with kubectl apply -f etc/kubernetes/weft-crd.yaml (docs/kubernetes.md)",
		ErrCRDMissing, Group, Version, Resource)
}
