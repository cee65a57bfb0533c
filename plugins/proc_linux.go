package plugins

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the plugin if the host dies without
// stopping it (SIGKILL, a crash), so no plugin outlives its host; and puts
// it in its own process group, so a Ctrl-C or SIGTERM meant for the server
// reaches only the server, which stops its plugins in order.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
