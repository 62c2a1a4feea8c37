// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"fmt"
	"time"
)

// Eventually calls cond every interval until it returns nil or timeout
// passes, and returns its last error.
func Eventually(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}
