package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// Report is the result of an agent-cycle run. Its JSON field names are
// stable; fields are only added.
type Report struct {
	Backend             string    `json:"backend"`            // "sqlite" or "postgres"
	Replicas            int       `json:"replicas,omitempty"` // eportal serve processes on the store, behind haproxy when more than one
	SeededServers       int       `json:"seeded_servers"`
	SeedSeconds         float64   `json:"seed_seconds"`
	Agents              int       `json:"agents"`
	AgentKey            string    `json:"agent_key"` // the activation key they registered with
	RegisterSeconds     float64   `json:"register_seconds"`
	RegistrationsPerSec float64   `json:"registrations_per_second"`
	Registration        Summary   `json:"registration"`
	Concurrency         int       `json:"concurrency"`
	Pinned              string    `json:"pinned,omitempty"` // which CPUs the server and loadgen kept to
	Cycle               string    `json:"cycle"`            // "real": download when the level changes; "worst": every cycle
	API                 string    `json:"api"`              // "run": check in and fetch the index in one request; "v1": two
	DurationSeconds     float64   `json:"duration_seconds"` // asked for
	ElapsedSeconds      float64   `json:"elapsed_seconds"`  // until the last cycle ended
	BundleBytes         int64     `json:"bundle_bytes"`
	Cycles              int       `json:"cycles"`
	CyclesPerSecond     float64   `json:"cycles_per_second"`
	Steps               []Step    `json:"steps"`                   // index, verify, bundle, checkin, then the whole cycle
	CPU                 *CPU      `json:"cpu,omitempty"`           // during the cycles; where /proc can be read
	CPUPerCycle         *PerEvent `json:"cpu_per_cycle,omitempty"` // the same, in CPU milliseconds per cycle
	Failures            Failures  `json:"failures"`
}

// Step is the latency of one step of the agent cycle, or of the whole
// cycle.
type Step struct {
	Name string `json:"name"`
	Summary
}

// Failures counts what went wrong during a run. Any of it fails the run.
type Failures struct {
	Failed  int      `json:"failed"`  // requests or checks that failed
	Retried int      `json:"retried"` // answers the client retried: 429, 5xx, broken connections
	Samples []string `json:"samples,omitempty"`
	Aborted bool     `json:"aborted,omitempty"` // the run stopped early after too many failures
}

// None reports whether nothing failed.
func (f Failures) None() bool { return f.Failed == 0 && f.Retried == 0 }

// ThroughputReport compares bundle downloads from eportal and nginx.
type ThroughputReport struct {
	BundleBytes     int64        `json:"bundle_bytes"`
	Concurrency     int          `json:"concurrency"`
	DurationSeconds float64      `json:"duration_seconds"`
	Servers         []Throughput `json:"servers"` // eportal, then nginx
}

// Throughput is one server's bundle downloads.
type Throughput struct {
	Server            string    `json:"server"`
	Requests          int       `json:"requests"`
	ElapsedSeconds    float64   `json:"elapsed_seconds"`
	RequestsPerSecond float64   `json:"requests_per_second"`
	MiBPerSecond      float64   `json:"mib_per_second"`
	Latency           Summary   `json:"latency"`
	CPU               *CPU      `json:"cpu,omitempty"`
	CPUPerRequest     *PerEvent `json:"cpu_per_request,omitempty"` // CPU milliseconds per download
	Failures          Failures  `json:"failures"`
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// num formats a figure without trailing zeros beyond what it has.
func num(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// msText formats milliseconds for a table: two decimals.
func msText(ms float64) string { return strconv.FormatFloat(ms, 'f', 2, 64) }

// writeText writes the report for a person.
func (r *Report) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "backend\t%s\n", r.Backend)
	if r.Replicas > 1 {
		fmt.Fprintf(tw, "replicas\t%d behind haproxy\n", r.Replicas)
	}
	fmt.Fprintf(tw, "seeded servers\t%d (seeded in %ss)\n", r.SeededServers, num(r.SeedSeconds))
	fmt.Fprintf(tw, "agents\t%d under key %s (registered in %ss, %s/s)\n", r.Agents, r.AgentKey, num(r.RegisterSeconds), num(r.RegistrationsPerSec))
	fmt.Fprintf(tw, "registration\tp50 %s ms, p99 %s ms, max %s ms\n", msText(r.Registration.P50), msText(r.Registration.P99), msText(r.Registration.Max))
	fmt.Fprintf(tw, "concurrency\t%d\n", r.Concurrency)
	if r.Pinned != "" {
		fmt.Fprintf(tw, "pinned\t%s\n", r.Pinned)
	}
	fmt.Fprintf(tw, "duration\t%ss (%ss elapsed)\n", num(r.DurationSeconds), num(r.ElapsedSeconds))
	fmt.Fprintf(tw, "bundle\t%d bytes, downloaded %s\n", r.BundleBytes, map[string]string{
		"real": "when the level changes", "worst": "in every cycle"}[r.Cycle])
	fmt.Fprintf(tw, "agent api\t%s\n", map[string]string{
		"run": "run: check-in and index in one request", "v1": "v1: index, then check-in"}[r.API])
	fmt.Fprintf(tw, "cycles\t%d (%s/s)\n", r.Cycles, num(r.CyclesPerSecond))
	if r.CPU != nil {
		fmt.Fprintf(tw, "cpu\t%s\n", r.CPU.text("eportal"))
	}
	if p := r.CPUPerCycle; p != nil {
		fmt.Fprintf(tw, "cpu per cycle\t%s\n", p.text("eportal"))
	}
	writeFailures(tw, r.Failures)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "step\tcount\tp50 ms\tp90 ms\tp99 ms\tmax ms")
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.Count, msText(s.P50), msText(s.P90), msText(s.P99), msText(s.Max))
	}
	return tw.Flush()
}

// writeText writes the comparison for a person.
func (r *ThroughputReport) writeText(w io.Writer) error {
	fmt.Fprintf(w, "bundle downloads: %d-byte file, %d concurrent GETs for %ss on each server\n\n",
		r.BundleBytes, r.Concurrency, num(r.DurationSeconds))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "server\trequests\treq/s\tMiB/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tfailures")
	for _, s := range r.Servers {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%d\n", s.Server, s.Requests, s.RequestsPerSecond,
			s.MiBPerSecond, msText(s.Latency.P50), msText(s.Latency.P90), msText(s.Latency.P99), msText(s.Latency.Max),
			s.Failures.Failed+s.Failures.Retried)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	sep := "\n"
	for _, s := range r.Servers {
		if s.CPU != nil {
			fmt.Fprintf(w, "%scpu during %s: %s\n", sep, s.Server, s.CPU.text(s.Server))
			sep = ""
		}
		if p := s.CPUPerRequest; p != nil {
			fmt.Fprintf(w, "cpu per download from %s: %s\n", s.Server, p.text(s.Server))
		}
	}
	for _, s := range r.Servers {
		if !s.Failures.None() {
			fmt.Fprintf(w, "\n%s:\n", s.Server)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			writeFailures(tw, s.Failures)
			tw.Flush()
		}
	}
	return nil
}

// text says where the CPU went, naming the server.
func (c *CPU) text(server string) string {
	s := fmt.Sprintf("%.2f of %d cores busy: loadgen %.2f, %s %.2f", c.MachineBusy, c.Cores, c.Loadgen, server, c.Server)
	if c.Database > 0 {
		s += fmt.Sprintf(", postgres %.2f", c.Database)
	}
	return s + fmt.Sprintf(", other %.2f", c.Other)
}

// text says what an event cost each part, naming the server.
func (p *PerEvent) text(server string) string {
	s := fmt.Sprintf("%s %.3f ms, loadgen %.3f ms", server, p.Server, p.Loadgen)
	if p.Database > 0 {
		s += fmt.Sprintf(", postgres %.3f ms", p.Database)
	}
	return s
}

func writeFailures(tw io.Writer, f Failures) {
	fmt.Fprintf(tw, "failures\t%d failed, %d retried\n", f.Failed, f.Retried)
	if f.Aborted {
		fmt.Fprintf(tw, "\tstopped early after %d failures\n", f.Failed+f.Retried)
	}
	for _, s := range f.Samples {
		fmt.Fprintf(tw, "\t%s\n", s)
	}
}
