// Command k8s-schemas turns pinned Kubernetes OpenAPI documents and CustomResourceDefinitions
// into the JSON schemas kubeconform reads, offline:
//
//	k8s-schemas -sources tools/k8s-schemas/sources.txt -root . -out .local/schemas
//
// It writes OUT/GROUP/KIND_VERSION.json (GROUP is the API group, or the version for the core
// group), the layout of kubeconform's schema location
// "OUT/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json". Every object schema that
// lists its properties is made strict (additionalProperties: false) unless it preserves unknown
// fields, so kubeconform -strict rejects misspelled and unknown fields.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

type source struct{ module, kind, glob string }

func main() {
	sources := flag.String("sources", "tools/k8s-schemas/sources.txt", "the pinned list of sources")
	root := flag.String("root", ".", "the repository root (for `local` sources)")
	out := flag.String("out", ".local/schemas", "output directory")
	manifests := flag.String("manifests", "", "instead: copy the manifests this list names (MODULE@VERSION DEST GLOB) from the pinned modules")
	flag.Parse()
	if *manifests != "" {
		if err := copyManifests(*manifests, *root, *out); err != nil {
			fail(err)
		}
		return
	}
	list, err := readSources(*sources)
	if err != nil {
		fail(err)
	}
	written := 0
	for _, s := range list {
		dir := *root
		if s.module != "local" {
			if dir, err = moduleDir(s.module); err != nil {
				fail(err)
			}
		}
		files, err := filepath.Glob(filepath.Join(dir, s.glob))
		if err != nil || len(files) == 0 {
			fail(fmt.Errorf("%s: no files match %s", s.module, s.glob))
		}
		for _, f := range files {
			var n int
			switch s.kind {
			case "openapi":
				n, err = fromOpenAPI(f, *out)
			case "crd":
				n, err = fromCRDs(f, *out)
			default:
				err = fmt.Errorf("unknown kind %q", s.kind)
			}
			if err != nil {
				fail(fmt.Errorf("%s: %w", f, err))
			}
			written += n
		}
	}
	fmt.Printf("k8s-schemas: %d schemas from %d sources into %s\n", written, len(list), *out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "k8s-schemas:", err)
	os.Exit(1)
}

func readSources(path string) ([]source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var list []source
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s: want MODULE@VERSION KIND GLOB, got %q", path, line)
		}
		list = append(list, source{fields[0], fields[1], fields[2]})
	}
	return list, sc.Err()
}

// moduleDir downloads a pinned module through the Go module proxy (or finds it in the cache).
// copyManifests copies, for each line MODULE@VERSION DEST GLOB of list, the module's files that
// match GLOB into OUT/DEST, named after the module's last path element and the file. MODULE
// `local` is the repository at root.
func copyManifests(list, root, out string) error {
	f, err := os.Open(list)
	if err != nil {
		return err
	}
	defer f.Close()
	copied := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Fields(line)
		if len(parts) != 3 {
			return fmt.Errorf("%s: want MODULE@VERSION DEST GLOB: %q", list, line)
		}
		dir := root
		if parts[0] != "local" {
			if dir, err = moduleDir(parts[0]); err != nil {
				return err
			}
		}
		files, err := filepath.Glob(filepath.Join(dir, parts[2]))
		if err != nil || len(files) == 0 {
			return fmt.Errorf("%s: no files match %s", parts[0], parts[2])
		}
		dest := filepath.Join(out, parts[1])
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return err
		}
		module := filepath.Base(strings.SplitN(parts[0], "@", 2)[0])
		for _, src := range files {
			raw, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			name := module + "-" + filepath.Base(src)
			if err := os.WriteFile(filepath.Join(dest, name), raw, 0o644); err != nil {
				return err
			}
			copied++
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	fmt.Printf("k8s-schemas: %d manifests from %s into %s\n", copied, list, out)
	return nil
}

func moduleDir(module string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Stderr = os.Stderr
	raw, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", module, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(raw, &info); err != nil {
		return "", err
	}
	if info.Error != "" {
		return "", fmt.Errorf("%s: %s", module, info.Error)
	}
	return info.Dir, nil
}

func write(out, group, kind, version string, schema map[string]any) error {
	if group == "" {
		group = version
	}
	dir := filepath.Join(out, group)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	raw, err := json.Marshal(schema)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, strings.ToLower(kind)+"_"+version+".json"), raw, 0o644)
}

// fromOpenAPI writes one schema per kind of a Kubernetes OpenAPI v3 document, each carrying the
// definitions it references under components/schemas, so its $refs resolve in the same file.
func fromOpenAPI(path, out string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, err
	}
	defs := doc.Components.Schemas
	for _, d := range defs {
		strict(d)
	}
	names := make([]string, 0, len(defs))
	for name := range defs {
		names = append(names, name)
	}
	sort.Strings(names)
	n := 0
	for _, name := range names {
		def := defs[name]
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk, _ := g.(map[string]any)
			group, _ := gvk["group"].(string)
			kind, _ := gvk["kind"].(string)
			version, _ := gvk["version"].(string)
			if kind == "" || strings.HasSuffix(kind, "List") || kind == "Status" || kind == "WatchEvent" || kind == "DeleteOptions" {
				continue
			}
			closure := map[string]any{}
			collect(def, defs, closure)
			schema := map[string]any{}
			for k, v := range def {
				schema[k] = v
			}
			schema["components"] = map[string]any{"schemas": closure}
			if err := write(out, group, kind, version, schema); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// collect adds every definition node refers to, transitively, to closure.
func collect(node any, defs map[string]map[string]any, closure map[string]any) {
	switch v := node.(type) {
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/components/schemas/")
			if _, seen := closure[name]; !seen {
				if def, ok := defs[name]; ok {
					closure[name] = def
					collect(def, defs, closure)
				}
			}
		}
		for _, child := range v {
			collect(child, defs, closure)
		}
	case []any:
		for _, child := range v {
			collect(child, defs, closure)
		}
	}
}

// fromCRDs writes one schema per served version of each CustomResourceDefinition in a YAML file.
func fromCRDs(path, out string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, part := range strings.Split("\n"+string(raw), "\n---") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		var crd struct {
			Kind string `json:"kind"`
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Served bool   `json:"served"`
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(part), &crd); err != nil {
			return n, err
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			schema := v.Schema.OpenAPIV3Schema
			strict(schema)
			if err := write(out, crd.Spec.Group, crd.Spec.Names.Kind, v.Name, schema); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// strict closes every object schema that lists properties, and turns Kubernetes' int-or-string
// markers into a JSON-schema type. Branches of oneOf/anyOf/allOf/not are partial schemas (they
// constrain some fields of an object described elsewhere) and are left open.
func strict(node any) { walk(node, true) }

func walk(node any, closable bool) {
	switch v := node.(type) {
	case map[string]any:
		if v["format"] == "int-or-string" || v["x-kubernetes-int-or-string"] == true {
			delete(v, "format")
			if _, hasAny := v["anyOf"]; !hasAny {
				v["type"] = []any{"integer", "string"}
			}
		}
		if _, has := v["properties"]; has && closable {
			_, set := v["additionalProperties"]
			if !set && v["x-kubernetes-preserve-unknown-fields"] != true {
				v["additionalProperties"] = false
			}
		}
		for key, child := range v {
			switch key {
			case "oneOf", "anyOf", "allOf", "not":
				walk(child, false)
			case "properties", "patternProperties", "definitions", "schemas":
				// Maps of name -> schema: each value is a full schema again.
				if m, ok := child.(map[string]any); ok {
					for _, s := range m {
						walk(s, true)
					}
				}
			default:
				walk(child, true)
			}
		}
	case []any:
		for _, child := range v {
			walk(child, closable)
		}
	}
}
