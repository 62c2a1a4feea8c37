// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/e2e"
	weftkube "github.com/weftnet/weft/etc/kubernetes"
	"github.com/weftnet/weft/subnet"
)

// defaultLabDir holds the lab's state file, logs, node state and etcd data.
const defaultLabDir = "/run/weft-lab"

// labDirEnv names the environment variable that overrides defaultLabDir.
const labDirEnv = "WEFT_LAB_DIR"

// labPrefix starts the lab's namespace names.
const labPrefix = "weftlab-"

// kubeToolsEnv names the environment variable with the directory of the
// Kubernetes programs (the Makefile exports it).
const kubeToolsEnv = "WEFT_KUBE_TOOLS"

func labDirFlag(fl *flag.FlagSet) *string {
	def := defaultLabDir
	if v := os.Getenv(labDirEnv); v != "" {
		def = v
	}
	return fl.String("dir", def, "lab directory: state file, logs, node state, etcd data (env "+labDirEnv+")")
}

func stateFile(dir string) string { return filepath.Join(dir, "state.json") }

func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, veth, bridges): run it with sudo")
	}
	return nil
}

// defaultBinDir is $WEFT_BIN_DIR, else the directory of this weft-lab.
func defaultBinDir() string {
	if d := os.Getenv(e2e.BinDirEnv); d != "" {
		return d
	}
	exe, err := os.Executable()
	if err != nil {
		return "bin"
	}
	return filepath.Dir(exe)
}

func labUp(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("weft-lab up", flag.ContinueOnError)
	fl.SetOutput(stderr)
	nodes := fl.Int("nodes", 3, "number of nodes (1-20)")
	pods := fl.Int("pods", 2, "pods per node (0-20)")
	backend := fl.String("backend", "vxlan", "backend: vxlan, wireguard or host-gw")
	dualStack := fl.Bool("dual-stack", false, "add an IPv6 pod network ("+e2e.DefaultIPv6Network+") and IPv6 underlay addresses")
	store := fl.String("store", "etcd", "where subnets come from: etcd (weftd's default) or kube (a real kube-apiserver and controller-manager, weftd --kube-subnet-mgr)")
	kubeTools := fl.String("kube-tools", os.Getenv(kubeToolsEnv), "with --store kube: directory of kube-apiserver, kube-controller-manager and kubectl, built by make kube-tools (env "+kubeToolsEnv+")")
	binDir := fl.String("bin-dir", defaultBinDir(), "directory with weftd, weft (CNI plugin) and weft-etcd (env "+e2e.BinDirEnv+")")
	dir := labDirFlag(fl)
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fl.Args())
	}
	switch *backend {
	case subnet.BackendVXLAN, subnet.BackendWireGuard, subnet.BackendHostGW:
	default:
		return fmt.Errorf("--backend %q: want vxlan, wireguard or host-gw", *backend)
	}
	var kube *e2e.KubeOptions
	switch *store {
	case "etcd":
	case "kube":
		if *kubeTools == "" {
			return fmt.Errorf("--store kube needs --kube-tools (or %s): the directory make kube-tools builds kube-apiserver, kube-controller-manager and kubectl into; make lab STORE=kube does both", kubeToolsEnv)
		}
		kube = &e2e.KubeOptions{Tools: *kubeTools}
	default:
		return fmt.Errorf("--store %q: want etcd or kube", *store)
	}
	if *nodes < 1 || *nodes > 20 {
		return fmt.Errorf("--nodes %d: want 1 to 20", *nodes)
	}
	if *pods < 0 || *pods > 20 {
		return fmt.Errorf("--pods %d: want 0 to 20", *pods)
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}
	if err := requireRoot(); err != nil {
		return err
	}
	if kube != nil {
		for _, name := range weftkube.ModeManifests {
			data, err := weftkube.Manifest(name)
			if err != nil {
				return err
			}
			kube.Manifests = append(kube.Manifests, e2e.Manifest{Name: "etc/kubernetes/" + name, Data: data})
		}
	}
	return up(ctx, *nodes, *pods, *backend, *dualStack, kube, *binDir, *dir)
}

func labDown(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("weft-lab down", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := labDirFlag(fl)
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fl.Args())
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}
	sf := stateFile(*dir)
	s, err := e2e.LoadState(sf)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stdout, "no lab is up (no state file %s): nothing to remove\n", sf)
		return nil
	}
	if err != nil {
		return err
	}
	if err := requireRoot(); err != nil {
		return err
	}
	return down(s, sf)
}

func labStatus(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("weft-lab status", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := labDirFlag(fl)
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fl.Args())
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}
	sf := stateFile(*dir)
	s, err := e2e.LoadState(sf)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stdout, "no lab is up (no state file %s): start one with 'make lab' (weft-lab up)\n", sf)
		return nil
	}
	if err != nil {
		return err
	}
	return status(ctx, s)
}

// labProc stops, starts or restarts one of the lab's processes (a node's
// weftd, or etcd) and records the new PID in the state file.
func labProc(ctx context.Context, verb string, args []string) error {
	fl := flag.NewFlagSet("weft-lab "+verb, flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := labDirFlag(fl)
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return fmt.Errorf("usage: weft-lab %s <node|etcd|kube-apiserver|kube-controller-manager>", verb)
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}
	name := fl.Arg(0)
	sf := stateFile(*dir)
	s, err := e2e.LoadState(sf)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no lab is up (no state file %s)", sf)
	}
	if err != nil {
		return err
	}
	if err := requireRoot(); err != nil {
		return err
	}
	return proc(verb, name, sf, s)
}
