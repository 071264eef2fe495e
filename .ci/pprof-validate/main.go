// Command pprof-validate reads each profile file named on its command line
// with Go's own github.com/google/pprof/profile package (what Grafana
// Pyroscope and Parca read pprof with) and checks it: Parse, then
// CheckValid. It prints each profile's sample types, period and sample
// count, and exits 1 if any profile fails.
//
// Built against Debian's golang-github-google-pprof-dev (GOPATH mode:
// GO111MODULE=off GOPATH=/usr/share/gocode), since Go's module proxy is not
// reachable from CI.
package main

import (
	"fmt"
	"os"

	"github.com/google/pprof/profile"
)

func main() {
	failed := false
	for _, name := range os.Args[1:] {
		if err := check(name); err != nil {
			fmt.Fprintf(os.Stderr, "pprof-validate: %s: %v\n", name, err)
			failed = true
		}
	}
	if failed || len(os.Args) < 2 {
		os.Exit(1)
	}
}

func check(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return fmt.Errorf("Parse: %w", err)
	}
	if err := p.CheckValid(); err != nil {
		return fmt.Errorf("CheckValid: %w", err)
	}
	types := ""
	for _, st := range p.SampleType {
		types += st.Type + "/" + st.Unit + " "
	}
	period := ""
	if p.PeriodType != nil {
		period = fmt.Sprintf("%s/%s %d", p.PeriodType.Type, p.PeriodType.Unit, p.Period)
	}
	functions := 0
	for _, fn := range p.Function {
		if fn.Name != "" {
			functions++
		}
	}
	fmt.Printf("%s: valid; sample types %s; period %s; %d samples, %d locations, %d named functions, %d mappings\n",
		name, types, period, len(p.Sample), len(p.Location), functions, len(p.Mapping))
	if len(p.Sample) == 0 {
		return fmt.Errorf("no samples")
	}
	return nil
}
