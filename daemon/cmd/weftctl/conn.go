// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

// connOptions are the etcd connection flags shared by the commands that
// talk to etcd. Each flag's default comes from WEFTCTL_<FLAG> (upper case,
// - as _) when that is set; a command's other flags never come from the
// environment.
type connOptions struct {
	endpoints string
	prefix    string
	caFile    string
	certFile  string
	keyFile   string
	username  string
	password  string
}

// envName returns the environment variable of a connection flag.
func envName(flagName string) string {
	return "WEFTCTL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// connFlags registers the connection flags on fs.
func connFlags(fs *flag.FlagSet) *connOptions {
	o := &connOptions{}
	str := func(p *string, name, def, usage string) {
		if v, ok := os.LookupEnv(envName(name)); ok && v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+envName(name)+")")
	}
	str(&o.endpoints, "etcd-endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	str(&o.prefix, "etcd-prefix", subnetetcd.DefaultPrefix, "etcd key prefix of weft's data")
	str(&o.caFile, "etcd-cafile", "", "CA certificate file to verify etcd's server certificate")
	str(&o.certFile, "etcd-certfile", "", "client certificate file for etcd (mutual TLS)")
	str(&o.keyFile, "etcd-keyfile", "", "client key file for etcd (mutual TLS)")
	str(&o.username, "etcd-username", "", "etcd user name")
	str(&o.password, "etcd-password", "", "etcd password (prefer the environment variable to the flag)")
	return o
}

// callTimeout bounds each etcd call of weftctl: an operator waiting at a
// prompt wants an answer quickly.
const callTimeout = 5 * time.Second

// open is what a command does once its arguments are checked: in an
// arguments-only context it stops there (errArgsOK), else it connects as
// store does.
func (o *connOptions) open(ctx context.Context) (*subnetetcd.Store, func(), error) {
	if err := argsChecked(ctx); err != nil {
		return nil, nil, err
	}
	return o.store(ctx)
}

// store connects to etcd and returns the lease store and a function that
// closes the connection.
func (o *connOptions) store(ctx context.Context) (*subnetetcd.Store, func(), error) {
	cli, err := subnetetcd.NewClient(subnetetcd.ClientConfig{
		Endpoints:   strings.Split(o.endpoints, ","),
		CAFile:      o.caFile,
		CertFile:    o.certFile,
		KeyFile:     o.keyFile,
		Username:    o.username,
		Password:    o.password,
		DialTimeout: callTimeout,
	})
	if err != nil {
		return nil, nil, o.explain(err)
	}
	log := logrus.New()
	log.Out = io.Discard
	s := subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: o.prefix, Log: log, CallTimeout: callTimeout})
	return s, func() { cli.Close() }, nil
}

// explain adds what to check to errors that mean etcd is out of reach.
func (o *connOptions) explain(err error) error {
	if err == nil {
		return nil
	}
	code := status.Code(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded), code == codes.Unavailable, code == codes.DeadlineExceeded:
		return fmt.Errorf("%w\ncannot reach etcd at %s: check --etcd-endpoints (or %s) and that etcd runs",
			err, o.endpoints, envName("etcd-endpoints"))
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrUserEmpty),
		code == codes.Unauthenticated, code == codes.PermissionDenied:
		return fmt.Errorf("%w\netcd refused the credentials: check --etcd-username/--etcd-password or the client certificate", err)
	}
	return err
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments (weftctl leases rm node-1 --yes), and returns the
// positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
