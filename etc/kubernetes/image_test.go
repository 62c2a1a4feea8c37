// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubernetes

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/etc/image"
)

// imageProblems checks that every container of the DaemonSet runs the one
// image make image tags (the Makefile's IMAGE_REPO, one tag for all), and,
// since that image's default user is not root, that each container sets
// runAsUser: 0 (weftd needs root for its added capabilities, the
// installer writes host directories).
func imageProblems(m *manifest, makefile string) []string {
	var bad []string
	add := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	repo := regexp.MustCompile(`(?m)^IMAGE_REPO\s*\?=\s*(\S+)$`).FindStringSubmatch(makefile)
	if repo == nil {
		return []string{"the Makefile sets no IMAGE_REPO"}
	}
	if len(m.DaemonSets) != 1 {
		return []string{"want one DaemonSet"}
	}
	spec := m.DaemonSets[0].Spec.Template.Spec
	tags := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		r, tag, ok := strings.Cut(c.Image, ":")
		if !ok || r != repo[1] || tag == "" {
			add("%s: image %q is not %s:TAG, which make image tags", c.Name, c.Image, repo[1])
		}
		tags[tag] = true
		if sc := c.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
			add("%s: runAsUser must be 0: the image's default user is %s", c.Name, image.User)
		}
	}
	if len(tags) > 1 {
		add("the containers name %d tags of the image, want one", len(tags))
	}
	return bad
}

// TestManifestImage checks the manifests' image names (one image for both) and users against
// make image (see imageProblems), and that the check can fail.
func TestManifestImage(t *testing.T) {
	orig := string(readFile(t, manifestFile))
	mk := string(readFile(t, "../../Makefile"))
	check := func(text string) string {
		m, err := decodeManifest([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(imageProblems(m, mk), "\n")
	}
	images := map[string]bool{}
	for _, mf := range manifests {
		text := string(readFile(t, mf.file))
		if p := check(text); p != "" {
			t.Errorf("%s:\n%s", mf.file, p)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s*image:\s*(\S+)$`).FindAllStringSubmatch(text, -1) {
			images[m[1]] = true
		}
	}
	if len(images) != 1 {
		t.Errorf("the manifests name %d images %v, want one", len(images), images)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"another repository", "image: ghcr.io/weftnet/weft:", "image: docker.io/weft/weft:", `image "docker.io/weft/weft:`},
		{"two tags", "image: ghcr.io/weftnet/weft:v0.1.0", "image: ghcr.io/weftnet/weft:v0.2.0", "2 tags"},
		{"default user", "            runAsUser: 0\n", "", "runAsUser must be 0"},
	} {
		t.Run("can fail/"+tc.name, func(t *testing.T) {
			edited := strings.Replace(orig, tc.old, tc.new, 1)
			if edited == orig {
				t.Fatalf("edit %q did not apply", tc.old)
			}
			if got := check(edited); !strings.Contains(got, tc.want) {
				t.Errorf("want a problem containing %q, got:\n%s", tc.want, got)
			}
		})
	}
}
