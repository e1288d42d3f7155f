// Command pause is the sandbox ("pause") container of the HIL node's pods (harness/node_profile.py): it holds
// the pod's namespaces, reaps the zombies that PID 1 inherits, and exits 0 on SIGTERM or SIGINT. Built static
// (CGO_ENABLED=0) by ci/peers/build.sh, so its image is this one file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getpid() != 1 {
		os.Stderr.WriteString("pause: warning: not PID 1, zombies are not reaped\n")
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
