// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
)

// ToolsEnv names the environment variable with the directory holding
// kube-apiserver, kube-controller-manager and kubectl. `make kube-tools`
// builds them, and the Makefile exports it for every target.
const ToolsEnv = "WEFT_KUBE_TOOLS"

// Tools are the programs expected in the [ToolsEnv] directory.
var Tools = []string{"kube-apiserver", "kube-controller-manager", "kubectl"}

// toolsDir decides from the environment: the directory, or a reason to
// skip, or an error.
func toolsDir(getenv func(string) string, stat func(string) (os.FileInfo, error)) (dir, skip string, err error) {
	dir = getenv(ToolsEnv)
	if dir == "" {
		if getenv("CI") != "" {
			return "", "", fmt.Errorf("%s is unset under CI: run the tests through make (make e2e builds the Kubernetes programs with make kube-tools and sets it)", ToolsEnv)
		}
		return "", fmt.Sprintf("skipping: %s is unset; run make kube-tools (or make e2e, which runs it) to build kube-apiserver, kube-controller-manager and kubectl, or point it at a directory holding them", ToolsEnv), nil
	}
	for _, name := range Tools {
		p := filepath.Join(dir, name)
		fi, err := stat(p)
		if err != nil {
			return "", "", fmt.Errorf("%s=%s: %s missing (run make kube-tools): %w", ToolsEnv, dir, name, err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", "", fmt.Errorf("%s=%s: %s is not an executable file", ToolsEnv, dir, name)
		}
	}
	return dir, "", nil
}
