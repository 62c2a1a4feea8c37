// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
)

// State is what a cluster created, in a form that survives the process
// (the lab's state file). [Teardown] removes exactly this.
type State struct {
	// ID is the run ID; Dir the cluster's directory, removed by Teardown
	// when OwnDir is set.
	ID     string `json:"id"`
	Dir    string `json:"dir"`
	OwnDir bool   `json:"ownDir"`
	// Backend is the backend type of the network config.
	Backend string `json:"backend"`
	// Namespaces are all namespaces created, in order of creation.
	Namespaces []string `json:"namespaces"`
	// Etcd is the etcd process; Nodes and Pods what was made of them.
	Etcd  *Proc       `json:"etcd,omitempty"`
	Nodes []NodeState `json:"nodes"`
	Pods  []PodState  `json:"pods"`
	// EtcdMembers are the processes of a multi-member etcd, by member
	// index (nil for a member never started).
	EtcdMembers []*Proc `json:"etcdMembers,omitempty"`
	// WireGuardDevices are device names whose UAPI sockets in
	// /var/run/wireguard belong to this cluster.
	WireGuardDevices []string `json:"wireguardDevices"`
	// Router, Underlay and Outside name those namespaces.
	Router   string `json:"router,omitempty"`
	Underlay string `json:"underlay"`
	Outside  string `json:"outside"`
	// EtcdEndpoint is etcd's client URL (from the cluster's namespaces).
	EtcdEndpoint string `json:"etcdEndpoint"`
	// Kube is the control plane of a Kubernetes-mode cluster.
	Kube *KubeState `json:"kube,omitempty"`
}

// KubeState is a Kubernetes-mode cluster's part of [State].
type KubeState struct {
	// APIServer and ControllerManager are the processes (in the underlay
	// namespace).
	APIServer         *Proc `json:"apiserver,omitempty"`
	ControllerManager *Proc `json:"controllerManager,omitempty"`
	// URL is the API server's URL (from the cluster's namespaces);
	// Kubeconfig an admin kubeconfig for it; Kubectl the kubectl program.
	URL        string `json:"url"`
	Kubeconfig string `json:"kubeconfig"`
	Kubectl    string `json:"kubectl"`
}

// NodeState is a node's part of [State].
type NodeState struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	IP        string `json:"ip"`
	HTTPAddr  string `json:"httpAddr"`
	// SubnetFile and LogFile are the node's subnet file and weftd log.
	SubnetFile string `json:"subnetFile"`
	LogFile    string `json:"logFile"`
	Weftd      *Proc  `json:"weftd,omitempty"`
}

// PodState is a pod's part of [State].
type PodState struct {
	Name      string `json:"name"`
	Node      string `json:"node"`
	Namespace string `json:"namespace"`
	IP        string `json:"ip,omitempty"`
	IPv6      string `json:"ipv6,omitempty"`
}

// Proc is a process the library started, identified by PID and checked by
// its command line before every signal, so that a recycled PID is never
// signalled.
type Proc struct {
	// PID of the process (`ip netns exec` execs the program, so this is
	// the program's PID).
	PID int `json:"pid"`
	// Binary is the program's path, as found in /proc/<pid>/cmdline.
	Binary string `json:"binary"`
	// Args are the program's arguments (without the program).
	Args []string `json:"args,omitempty"`
	// Namespace is the network namespace it runs in.
	Namespace string `json:"namespace,omitempty"`
	// Log is the file receiving the process's stdout and stderr.
	Log string `json:"log"`

	done chan struct{} // closed when the process is reaped (own child only)
}

// LoadState reads a state file written through Options.StateFile.
func LoadState(path string) (State, error) {
	var s State
	data, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("parse %s: %w", path, err)
	}
	return s, nil
}

// SaveState writes s to path atomically (a temporary file renamed over
// path), in the form [LoadState] reads.
func SaveState(path string, s State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
