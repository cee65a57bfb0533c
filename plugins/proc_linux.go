package plugins

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the plugin if the host dies without
// stopping it (SIGKILL, a crash), so no plugin outlives its host.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
