// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package systemd holds weftd's systemd unit (weftd.service) and its example
// environment file (weftd.env), which are not Go code, and the tests that keep
// them right: systemd-analyze verify must accept the unit without a warning,
// the unit must keep its hardening and the directories weftd writes, and the
// environment file must list exactly weftd's flags with their defaults.
package systemd
