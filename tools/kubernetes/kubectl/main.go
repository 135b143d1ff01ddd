// kubectl, built from k8s.io/kubectl at the version the schemas use, for the runbooks and the
// tests against the local control plane.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand())
}
