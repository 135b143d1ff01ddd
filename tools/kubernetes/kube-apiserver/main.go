// kube-apiserver, built from k8s.io/kubernetes at the version the schemas use
// (tools/k8s-schemas/sources.txt), for the local control plane (tern_local::ControlPlane).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
