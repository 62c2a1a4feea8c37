// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/subnet"
)

// MaxConfigSize is the largest network config read (a real one is a few
// hundred bytes).
const MaxConfigSize = 64 << 10

// configWhere names where the network config is read, for messages.
func (s *Store) configWhere() string {
	if s.cfg.NetConfFile != "" {
		return "file " + s.cfg.NetConfFile
	}
	return fmt.Sprintf("ConfigMap %s/%s key %s", s.cfg.ConfigNamespace, s.cfg.ConfigName, ConfigKey)
}

// GetConfig reads and validates the network config, from the file or the
// ConfigMap.
func (s *Store) GetConfig(ctx context.Context) (*subnet.Config, error) {
	raw, err := s.readConfig(ctx)
	if err != nil {
		return nil, err
	}
	return s.parseConfig(raw)
}

func (s *Store) parseConfig(raw []byte) (*subnet.Config, error) {
	if len(raw) > MaxConfigSize {
		return nil, &subnet.ConfigError{Key: s.configWhere(), Err: fmt.Errorf("%d bytes, more than %d", len(raw), MaxConfigSize)}
	}
	c, err := subnet.ParseConfig(raw)
	if err != nil {
		return nil, &subnet.ConfigError{Key: s.configWhere(), Err: err}
	}
	return c, nil
}

// readConfig returns the raw config, or an error wrapping
// subnet.ErrNoConfig when there is none.
func (s *Store) readConfig(ctx context.Context) ([]byte, error) {
	if s.cfg.NetConfFile != "" {
		raw, err := os.ReadFile(s.cfg.NetConfFile)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist", subnet.ErrNoConfig, s.cfg.NetConfFile)
		}
		if err != nil {
			return nil, fmt.Errorf("read network config: %w", err)
		}
		return raw, nil
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	cm, err := s.cs.getConfigMap(cctx, s.cfg.ConfigNamespace, s.cfg.ConfigName)
	if apierrors.IsNotFound(err) {
		cm = nil
	} else if err != nil {
		return nil, fmt.Errorf("read ConfigMap %s/%s: %w", s.cfg.ConfigNamespace, s.cfg.ConfigName, err)
	}
	return s.configOf(cm)
}

// configOf returns the raw config the ConfigMap cm (nil: none) holds.
func (s *Store) configOf(cm *corev1.ConfigMap) ([]byte, error) {
	if cm == nil {
		return nil, fmt.Errorf("%w: no ConfigMap %s/%s; create it with the network config in key %s (etc/kubernetes/weft-kube.yaml has one)",
			subnet.ErrNoConfig, s.cfg.ConfigNamespace, s.cfg.ConfigName, ConfigKey)
	}
	v, ok := cm.Data[ConfigKey]
	if !ok {
		return nil, fmt.Errorf("%w: ConfigMap %s/%s has no key %s", subnet.ErrNoConfig, s.cfg.ConfigNamespace, s.cfg.ConfigName, ConfigKey)
	}
	return []byte(v), nil
}

// WatchConfig calls fn with the current config, then with each change,
// until ctx is done. The ConfigMap is followed by an informer on that one
// object; the file is read again every FilePollInterval (a ConfigMap
// mounted as a volume changes by a symlink swap, which this sees too).
func (s *Store) WatchConfig(ctx context.Context, fn func(*subnet.Config, error)) error {
	if s.cfg.NetConfFile != "" {
		return s.watchFile(ctx, fn)
	}
	return s.watchConfigMap(ctx, fn)
}

func (s *Store) watchFile(ctx context.Context, fn func(*subnet.Config, error)) error {
	var last []byte
	var lastErr string
	first := true
	t := time.NewTicker(s.cfg.FilePollInterval)
	defer t.Stop()
	for {
		raw, err := s.readConfig(ctx)
		errText := ""
		if err != nil {
			errText = err.Error()
		}
		if first || !bytes.Equal(raw, last) || errText != lastErr {
			first, last, lastErr = false, raw, errText
			if err != nil {
				fn(nil, err)
			} else {
				fn(s.parseConfig(raw))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Store) watchConfigMap(ctx context.Context, fn func(*subnet.Config, error)) error {
	lw := patient(s.observed(cache.NewListWatchFromClient(s.cs.core, "configmaps", s.cfg.ConfigNamespace,
		fields.OneTermEqualSelector("metadata.name", s.cfg.ConfigName))))
	inf := cache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 0, cache.Indexers{})
	kick := make(chan struct{}, 1)
	if _, err := inf.AddEventHandler(kicker(kick)); err != nil {
		return fmt.Errorf("watch ConfigMap: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); inf.Run(ctx.Done()) }()
	defer func() { cancel(); <-done }()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	var lastRV = "-"
	for {
		var cm *corev1.ConfigMap
		if obj, ok, _ := inf.GetStore().GetByKey(s.cfg.ConfigNamespace + "/" + s.cfg.ConfigName); ok {
			cm = obj.(*corev1.ConfigMap)
		}
		rv := ""
		if cm != nil {
			rv = cm.ResourceVersion
		}
		if rv != lastRV {
			lastRV = rv
			raw, err := s.configOf(cm)
			if err != nil {
				fn(nil, err)
			} else {
				fn(s.parseConfig(raw))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kick:
		}
	}
}

// kicker is an informer event handler that signals kick (capacity 1) on
// every event, without blocking.
func kicker(kick chan struct{}) cache.ResourceEventHandlerFuncs {
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
}
