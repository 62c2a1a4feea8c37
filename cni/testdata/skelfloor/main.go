// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command skelfloor is the smallest CNI plugin built on skel, for the CNI
// benchmark: ADD decodes the network config and prints a result shaped like
// weft's (two interfaces, an address and a default route for IPv4, and for
// IPv6 too when the config says "dualStack": true), and does no kernel or
// file work; DEL does nothing. Run through libcni, it
// measures what any Go plugin built on skel pays per call before its own
// work: fork and exec, the Go runtime, skel, the JSON in and out.
package main

import (
	"encoding/json"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: add, Del: func(*skel.CmdArgs) error { return nil }}, version.All, "skelfloor")
}

func add(args *skel.CmdArgs) error {
	var conf struct {
		types.NetConf
		DualStack bool `json:"dualStack"`
	}
	if err := json.Unmarshal(args.StdinData, &conf); err != nil {
		return types.NewError(types.ErrDecodingFailure, err.Error(), "")
	}
	ifc := 1
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: "weft00000000", Mac: "02:00:00:00:00:01"},
			{Name: args.IfName, Mac: "02:00:00:00:00:02", Sandbox: args.Netns},
		},
	}
	fams := []struct{ addr, gw, def string }{
		{"10.245.9.2/24", "10.245.9.1", "0.0.0.0/0"},
		{"fd10:245:0:9::2/64", "fd10:245:0:9::1", "::/0"},
	}
	if !conf.DualStack {
		fams = fams[:1]
	}
	for _, a := range fams {
		ip, n, _ := net.ParseCIDR(a.addr)
		_, def, _ := net.ParseCIDR(a.def)
		gw := net.ParseIP(a.gw)
		res.IPs = append(res.IPs, &current.IPConfig{Interface: &ifc, Address: net.IPNet{IP: ip, Mask: n.Mask}, Gateway: gw})
		res.Routes = append(res.Routes, &types.Route{Dst: *def, GW: gw})
	}
	out, err := res.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, err.Error(), "")
	}
	return out.Print()
}
