// Command applybench runs in the QEMU guest and measures what
// `kcarectl --apply` adds on top of the bare minimum: finit_module of the
// same module and a wait for its livepatch transition. Each round loads,
// waits, then disables and removes the patch untimed, so every round
// starts from an unpatched kernel.
//
// It also says where kcarectl's time goes, from when each of its progress
// lines reaches stderr: from the start to "applying level" (starting the
// process, the lock, the keyring, every check of the bundle, caching it
// and writing the apply's record), from there to "waiting up to"
// (finit_module), and from there to the end (the transition, recording
// the level, removing what it replaced, exiting); and, in this process,
// what verifying the bundle's signature and contents alone costs.
//
//	applybench -bundle l1.kcp -module kcare_test_l1.ko -rounds 20
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/kmod"
	"github.com/kcare/kcare/internal/livepatch"
	"github.com/kcare/kcare/internal/trust"
)

func main() {
	bundlePath := flag.String("bundle", "", "signed bundle for kcarectl --apply")
	modulePath := flag.String("module", "", "the same module, for the bare load")
	name := flag.String("name", "kcare_test_l1", "module name")
	rounds := flag.Int("rounds", 20, "rounds of each")
	kcarectl := flag.String("kcarectl", "kcarectl", "kcarectl binary")
	keys := flag.String("keys", config.DefaultKeyringDir, "the keyring kcarectl verifies with")
	profile := flag.String("cpuprofile", "", "also apply the bundle -rounds times in this process, as kcarectl --apply does, and write a CPU profile of that to `FILE`")
	flag.Parse()
	if err := run(*bundlePath, *modulePath, *name, *kcarectl, *keys, *rounds); err != nil {
		fmt.Fprintf(os.Stderr, "applybench: %v\n", err)
		os.Exit(1)
	}
	if *profile == "" {
		return
	}
	if err := profileApply(*bundlePath, *profile, *rounds); err != nil {
		fmt.Fprintf(os.Stderr, "applybench: %v\n", err)
		os.Exit(1)
	}
}

func run(bundlePath, modulePath, name, kcarectl, keyringDir string, rounds int) error {
	ctx := context.Background()
	image, err := os.ReadFile(modulePath)
	if err != nil {
		return err
	}
	sys := livepatch.Sysfs{Root: "/", Poll: time.Millisecond}
	remove := func() error {
		if err := sys.Disable(name); err != nil {
			return err
		}
		if err := sys.WaitGone(ctx, name, time.Minute); err != nil {
			return err
		}
		return kmod.Kernel{}.Unload(ctx, name)
	}
	var bare, agent, startup []time.Duration
	var bareLoad, toApplying, loading, toExit, verify []time.Duration
	data, _ := os.ReadFile(bundlePath)
	sig, _ := os.ReadFile(bundlePath + ".sig")
	keys, err := trust.LoadKeyring(keyringDir)
	if err != nil {
		return fmt.Errorf("keyring %s: %w", keyringDir, err)
	}
	for i := 0; i < rounds; i++ {
		start := time.Now()
		if err := (kmod.Kernel{}).Load(ctx, image); err != nil {
			return fmt.Errorf("bare load: %w", err)
		}
		bareLoad = append(bareLoad, time.Since(start))
		if err := sys.WaitTransition(ctx, name, time.Minute); err != nil {
			return err
		}
		bare = append(bare, time.Since(start))
		if err := remove(); err != nil {
			return err
		}

		start = time.Now()
		marks, out, err := runMarked(kcarectl, []string{"applying level", "waiting up to"}, "--apply", bundlePath)
		if err != nil {
			return fmt.Errorf("kcarectl --apply: %v\n%s", err, out)
		}
		agent = append(agent, time.Since(start))
		toApplying = append(toApplying, marks[0].Sub(start))
		loading = append(loading, marks[1].Sub(marks[0]))
		toExit = append(toExit, start.Add(agent[len(agent)-1]).Sub(marks[1]))
		if out, err := exec.Command(kcarectl, "--unload").CombinedOutput(); err != nil {
			return fmt.Errorf("kcarectl --unload: %v\n%s", err, out)
		}

		// What starting the process alone costs, for reference.
		start = time.Now()
		if out, err := exec.Command(kcarectl, "--version").CombinedOutput(); err != nil {
			return fmt.Errorf("kcarectl --version: %v\n%s", err, out)
		}
		startup = append(startup, time.Since(start))

		// Verifying the bundle in this process: what kcarectl's checks
		// cost without starting a process.
		start = time.Now()
		if _, err := bundle.Open(data, sig, keys); err != nil {
			return fmt.Errorf("verify %s: %w", bundlePath, err)
		}
		verify = append(verify, time.Since(start))
	}
	b, a := median(bare), median(agent)
	fmt.Printf("rounds %d\n", rounds)
	fmt.Printf("bare_median_ms %.1f\nbare_p90_ms %.1f\n", ms(b), ms(pct(bare, 90)))
	fmt.Printf("kcarectl_median_ms %.1f\nkcarectl_p90_ms %.1f\n", ms(a), ms(pct(agent, 90)))
	fmt.Printf("overhead_median_ms %.1f\n", ms(a-b))
	fmt.Printf("process_start_median_ms %.1f\n", ms(median(startup)))
	fmt.Printf("bare_load_median_ms %.1f\nbare_wait_median_ms %.1f\n", ms(median(bareLoad)), ms(b-median(bareLoad)))
	fmt.Printf("kcarectl_to_applying_median_ms %.1f\nkcarectl_load_median_ms %.1f\nkcarectl_wait_to_exit_median_ms %.1f\n",
		ms(median(toApplying)), ms(median(loading)), ms(median(toExit)))
	fmt.Printf("verify_in_process_median_ms %.1f\n", ms(median(verify)))
	// Of starting the process: the packages' init functions, as the
	// runtime's inittrace reports them.
	cmd := exec.Command(kcarectl, "--version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	trace, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kcarectl --version with inittrace: %v\n%s", err, trace)
	}
	fmt.Printf("process_init_ms %.1f\n", initTotal(string(trace)))
	return nil
}

// initTotal sums the clock times of an inittrace's lines: "init PKG @T
// ms, X ms clock, ...".
func initTotal(trace string) float64 {
	var total float64
	for _, line := range strings.Split(trace, "\n") {
		f := strings.Fields(line)
		if len(f) >= 7 && f[0] == "init" && f[6] == "clock," {
			if x, err := strconv.ParseFloat(f[4], 64); err == nil {
				total += x
			}
		}
	}
	return total
}

// runMarked runs name with args and returns when each of marks first
// began a line of its stderr (in order), and its combined output.
func runMarked(name string, marks []string, args ...string) ([]time.Time, string, error) {
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout = &out
	pr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	at := make([]time.Time, len(marks))
	sc := bufio.NewScanner(pr)
	next := 0
	for sc.Scan() {
		now := time.Now()
		line := sc.Text()
		out.WriteString(line + "\n")
		if next < len(marks) && strings.Contains(line, marks[next]) {
			at[next] = now
			next++
		}
	}
	err = cmd.Wait()
	if err == nil && next < len(marks) {
		err = fmt.Errorf("no line with %q on stderr", marks[next])
	}
	return at, out.String(), err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(d []time.Duration) time.Duration { return pct(d, 50) }

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

// profileApply applies the bundle rounds times in this process with
// kcarectl's agent, as kcarectl --apply does but without starting a
// process, and unloads it after each (untimed), under a CPU profile
// written to path; it prints the median apply.
func profileApply(bundlePath, path string, rounds int) error {
	ctx := context.Background()
	f, err := config.Load(config.DefaultPath)
	if err != nil {
		return err
	}
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	a := &agent.Agent{Root: "/", Config: cfg, Loader: kmod.Kernel{}}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	var took []time.Duration
	for i := 0; i < rounds; i++ {
		if i == min(1, rounds-1) { // a first round warms the caches up, as every earlier kcarectl run did
			if err := pprof.StartCPUProfile(out); err != nil {
				return err
			}
		}
		start := time.Now()
		data, err := agent.ReadFile(bundlePath, bundle.MaxBundleSize)
		if err != nil {
			return err
		}
		sig, err := agent.ReadFile(bundlePath+".sig", bundle.MaxSignatureSize)
		if err != nil {
			return err
		}
		if _, err := a.Apply(ctx, data, sig); err != nil {
			return fmt.Errorf("apply in process: %w", err)
		}
		took = append(took, time.Since(start))
		if _, err := a.Unload(ctx); err != nil {
			return fmt.Errorf("unload in process: %w", err)
		}
	}
	pprof.StopCPUProfile()
	fmt.Printf("apply_in_process_median_ms %.1f\n", ms(median(took[min(1, rounds-1):])))
	return nil
}
