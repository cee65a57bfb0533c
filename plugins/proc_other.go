//go:build !linux

package plugins

import "os/exec"

// dieWithParent: only Linux can tie a child's life to its parent's; on
// other systems a host killed without stopping leaves its plugins running.
func dieWithParent(*exec.Cmd) {}
