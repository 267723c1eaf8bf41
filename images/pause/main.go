// Command pause is the pod sandbox ("pause") image of the project's test nodes: the process that holds
// a pod's namespaces. Like registry.k8s.io/pause it sleeps until SIGINT or SIGTERM and, as PID 1 of the
// pod, reaps the zombies of processes that exit inside it. Built static (CGO_ENABLED=0) onto scratch by
// `make images` (scripts/build_images.py), because no image can be pulled on these machines.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("cachedmodel pause 3.10")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child without blocking (one SIGCHLD may stand for several exits).
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
