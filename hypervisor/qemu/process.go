package qemu

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startOwned starts cmd so that it cannot outlive ingot, whatever kills ingot:
//   - its own process group, so a terminal's Ctrl-C reaches ingot (which shuts the guest down in
//     order) rather than QEMU directly, and so the whole group can be killed;
//   - Pdeathsig=SIGKILL, so the kernel kills QEMU when ingot dies, even by SIGKILL.
//
// Pdeathsig fires when the *thread* that forked the child exits, not the process, and the Go
// runtime may retire threads. So the fork happens on a goroutine locked to its OS thread, and that
// goroutine stays there, in Wait, for the child's whole life.
//
// The returned channel receives cmd.Wait's result once; it has one slot, so a reader that is not
// the last may put the value back.
func startOwned(cmd *exec.Cmd) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL

	started := make(chan error)
	exited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: when this goroutine returns the runtime retires the thread, which is
		// only safe once the child is gone, and by then it is.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}
