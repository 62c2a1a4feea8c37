// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package systemd holds weftd's systemd unit (weftd.service), its example
// environment file (weftd.env) and the sysusers.d entry of the weft user
// (weft.sysusers), which are not Go code, and the tests that keep them right:
// systemd-analyze verify must accept the unit without a warning, the unit must
// keep its hardening and the directories weftd writes, systemd-sysusers must
// create the user the unit runs as, and the environment file must list
// exactly weftd's flags with their defaults. The privilege test runs weftd
// with exactly the unit's privileges; it also shows what the unit needs
// from the host: a /dev/net/tun the weft user may open (mode 0666, as udev
// makes it) for userspace WireGuard, and weftd's error where it is 0600
// (docs/install.md, "The TUN device").
package systemd
