// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package vagrant holds weft's multi-VM end-to-end setup, which is not Go
// code: a Vagrantfile for three Debian VMs on a private network, the
// provisioning scripts (etcd on the first VM, weftd as the systemd unit and
// the CNI plugin on all three), check.sh, which runs the netns e2e suite's
// connectivity checks across the VMs over SSH, node.sh, its in-VM half, and
// run.sh, the driver behind make e2e-vagrant.
//
// No VM can run on the machines this project is developed and tested on, so
// the tests here check what can be checked without one: ruby -c on the
// Vagrantfile, the Vagrantfile evaluated against a stand-in for Vagrant's
// configuration API (machines, addresses, provisioners and the files they
// name), shellcheck on every script, and that check.sh only calls commands
// node.sh has.
package vagrant
