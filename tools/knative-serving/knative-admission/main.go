// knative-admission runs Knative Services through Knative Serving's own defaulting and
// validation code (the API package its webhook calls), with the config maps our KnativeServing
// sets, without a cluster. A Service the webhook would refuse is reported, and the exit is 1.
//
//	knative-admission --serving knative-serving.yaml manifests.yaml...
//
// --serving is a rendered KnativeServing (knative/platform); its spec.config.defaults,
// .features and .autoscaler are what Serving's webhook reads from config-defaults,
// config-features and config-autoscaler. Every serving.knative.dev/v1 Service in the manifests
// is defaulted (SetDefaults) and validated (Validate) as on create.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	authv1 "k8s.io/api/authentication/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"knative.dev/serving/pkg/apis/config"
	v1 "knative.dev/serving/pkg/apis/serving/v1"
	asconfig "knative.dev/serving/pkg/autoscaler/config"
)

type knativeServing struct {
	Kind string `json:"kind"`
	Spec struct {
		Config map[string]map[string]string `json:"config"`
	} `json:"spec"`
}

type meta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// documents splits a multi-document YAML file into JSON documents.
func documents(path string) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var out [][]byte
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if doc == nil {
			continue
		}
		j, err := yaml.Marshal(doc)
		if err != nil {
			return nil, err
		}
		js, err := yaml.YAMLToJSON(j)
		if err != nil {
			return nil, err
		}
		out = append(out, js)
	}
}

// servingConfig builds the config Serving's webhook would hold, from a KnativeServing.
func servingConfig(path string) (*config.Config, error) {
	docs, err := documents(path)
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		var ks knativeServing
		if err := yaml.Unmarshal(d, &ks); err != nil || ks.Kind != "KnativeServing" {
			continue
		}
		c := ks.Spec.Config
		defaults, err := config.NewDefaultsConfigFromMap(c["defaults"])
		if err != nil {
			return nil, fmt.Errorf("config-defaults: %w", err)
		}
		features, err := config.NewFeaturesConfigFromMap(c["features"])
		if err != nil {
			return nil, fmt.Errorf("config-features: %w", err)
		}
		autoscaler, err := asconfig.NewConfigFromMap(c["autoscaler"])
		if err != nil {
			return nil, fmt.Errorf("config-autoscaler: %w", err)
		}
		return &config.Config{Defaults: defaults, Features: features, Autoscaler: autoscaler}, nil
	}
	return nil, fmt.Errorf("%s: no KnativeServing", path)
}

func main() {
	serving := flag.String("serving", "", "a rendered KnativeServing whose config the webhook uses")
	flag.Parse()
	if *serving == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: knative-admission --serving knative-serving.yaml manifests.yaml...")
		os.Exit(2)
	}
	cfg, err := servingConfig(*serving)
	if err != nil {
		fmt.Fprintln(os.Stderr, "knative-admission:", err)
		os.Exit(2)
	}
	ctx := config.ToContext(context.Background(), cfg)
	ctx = apis.WithUserInfo(ctx, &authv1.UserInfo{Username: "system:serviceaccount:argocd:argocd-application-controller"})
	checked, refused := 0, 0
	for _, path := range flag.Args() {
		docs, err := documents(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "knative-admission:", err)
			os.Exit(2)
		}
		for _, d := range docs {
			var m meta
			if err := yaml.Unmarshal(d, &m); err != nil || m.APIVersion != "serving.knative.dev/v1" || m.Kind != "Service" {
				continue
			}
			var svc v1.Service
			if err := yaml.Unmarshal(d, &svc); err != nil {
				fmt.Printf("%s: a Service that does not decode: %v\n", path, err)
				refused++
				continue
			}
			checked++
			// The defaulting webhook, then the validating one, as on create.
			create := apis.WithinCreate(ctx)
			svc.SetDefaults(create)
			if fe := svc.Validate(create); fe != nil {
				fmt.Printf("%s: Service %s refused: %v\n", path, svc.Name, fe)
				refused++
			}
		}
	}
	fmt.Printf("knative-admission: %d Services checked, %d refused\n", checked, refused)
	if refused > 0 || checked == 0 {
		os.Exit(1)
	}
}
