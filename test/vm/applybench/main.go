// Command applybench runs in the QEMU guest and measures what
// `kcarectl --apply` adds on top of the bare minimum: finit_module of the
// same module and a wait for its livepatch transition. Each round loads,
// waits, then disables and removes the patch untimed, so every round
// starts from an unpatched kernel.
//
//	applybench -bundle l1.kcp -module kcare_test_l1.ko -rounds 20
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"time"

	"github.com/kcare/kcare/internal/kmod"
	"github.com/kcare/kcare/internal/livepatch"
)

func main() {
	bundlePath := flag.String("bundle", "", "signed bundle for kcarectl --apply")
	modulePath := flag.String("module", "", "the same module, for the bare load")
	name := flag.String("name", "kcare_test_l1", "module name")
	rounds := flag.Int("rounds", 20, "rounds of each")
	kcarectl := flag.String("kcarectl", "kcarectl", "kcarectl binary")
	flag.Parse()
	if err := run(*bundlePath, *modulePath, *name, *kcarectl, *rounds); err != nil {
		fmt.Fprintf(os.Stderr, "applybench: %v\n", err)
		os.Exit(1)
	}
}

func run(bundlePath, modulePath, name, kcarectl string, rounds int) error {
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
	for i := 0; i < rounds; i++ {
		start := time.Now()
		if err := (kmod.Kernel{}).Load(ctx, image); err != nil {
			return fmt.Errorf("bare load: %w", err)
		}
		if err := sys.WaitTransition(ctx, name, time.Minute); err != nil {
			return err
		}
		bare = append(bare, time.Since(start))
		if err := remove(); err != nil {
			return err
		}

		start = time.Now()
		out, err := exec.Command(kcarectl, "--apply", bundlePath).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kcarectl --apply: %v\n%s", err, out)
		}
		agent = append(agent, time.Since(start))
		if out, err := exec.Command(kcarectl, "--unload").CombinedOutput(); err != nil {
			return fmt.Errorf("kcarectl --unload: %v\n%s", err, out)
		}

		// What starting the process alone costs, for reference.
		start = time.Now()
		if out, err := exec.Command(kcarectl, "--version").CombinedOutput(); err != nil {
			return fmt.Errorf("kcarectl --version: %v\n%s", err, out)
		}
		startup = append(startup, time.Since(start))
	}
	b, a := median(bare), median(agent)
	fmt.Printf("rounds %d\n", rounds)
	fmt.Printf("bare_median_ms %.1f\nbare_p90_ms %.1f\n", ms(b), ms(pct(bare, 90)))
	fmt.Printf("kcarectl_median_ms %.1f\nkcarectl_p90_ms %.1f\n", ms(a), ms(pct(agent, 90)))
	fmt.Printf("overhead_median_ms %.1f\n", ms(a-b))
	fmt.Printf("process_start_median_ms %.1f\n", ms(median(startup)))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(d []time.Duration) time.Duration { return pct(d, 50) }

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}
