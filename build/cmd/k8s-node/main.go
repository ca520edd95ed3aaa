// Command k8s-node runs a single-node Kubernetes cluster on this machine whose containerd
// has the confguest runtime handler (see build/k8snode), prints how to reach it, and tears
// it down on SIGINT or SIGTERM. `make k8s-node` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"confguest/build/k8snode"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-node:", err)
		os.Exit(1)
	}
}

func run() error {
	var o k8snode.Options
	o.Host.Flags(flag.CommandLine, k8snode.DefaultBridge, k8snode.DefaultSubnet)
	flag.StringVar(&o.BinDir, "bin", "", "folder with kube-apiserver, kubelet and kubectl (default: built by deploy/build-k8s.sh)")
	flag.StringVar(&o.Name, "name", k8snode.DefaultName, "node name")
	flag.DurationVar(&o.Sync, "sync", k8snode.DefaultSync, "the kubelet's pod sync period")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if err := o.Host.Resolve(); err != nil {
		return err
	}
	o.Log = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := k8snode.Start(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf(`k8s-node: up. In another shell:
  export KUBECONFIG=%s
  %s apply -f deploy/runtimeclass.yaml
  %s apply -f deploy/examples/hello.yaml
Pods name their node (spec.nodeName: %s): there is no scheduler.
Logs: %s. Ctrl-C stops the node and removes everything it made.
`, n.Kubeconfig, n.KubectlBin, n.KubectlBin, n.Name, n.Logs())
	<-ctx.Done()
	fmt.Println("k8s-node: stopping")
	return n.Stop()
}
