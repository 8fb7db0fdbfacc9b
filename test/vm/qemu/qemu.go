// Package qemu boots a kernel in QEMU and runs commands in it.
//
// The guest runs from an initramfs (BuildInitramfs) whose init starts
// guestd, a small HTTP server on the guest's port 7100. Start forwards a
// free port on the host's loopback to it through QEMU's user network, in
// which the guest is 10.0.2.15 and reaches the host's loopback at 10.0.2.2.
// QEMU always runs with TCG, one CPU, the serial console in a file, and
// host directories shared over 9p.
package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of Config.
const (
	DefaultMemoryMB    = 512
	DefaultBootTimeout = 60 * time.Second
)

// stopTimeout bounds how long Stop waits for the guest to power off.
const stopTimeout = 20 * time.Second

// consoleTailLines is how much of the console an error quotes.
const consoleTailLines = 40

// Share is a host directory shared with the guest over 9p (virtio) and
// mounted by the guest's init at GuestPath.
type Share struct {
	Tag       string // 9p mount tag: letters, digits, '_' or '-', at most 31
	HostDir   string
	GuestPath string // absolute, without spaces
}

// Config says how to start QEMU.
type Config struct {
	Kernel      string // a vmlinux ELF (booted through PVH) or a bzImage
	Initrd      string
	Append      string // added to the kernel command line
	MemoryMB    int    // DefaultMemoryMB when zero
	Shares      []Share
	ConsoleLog  string        // host file for the serial console; a temporary one when empty
	BootTimeout time.Duration // DefaultBootTimeout when zero
	// Isolated cuts the guest off from the host and beyond (QEMU's
	// restrict=on): 10.0.2.2 answers nothing, while guestd's forwarded
	// port still works.
	Isolated bool
	// Disk, when set, is a raw disk image the guest sees as /dev/vda
	// (virtio-blk); see BuildRootInitramfs to boot from it.
	Disk string
	// Forwards are TCP ports forwarded from the host's loopback to the
	// guest, besides guestd's.
	Forwards []Forward
	// Accel lists QEMU's accelerators to try, in order: "tcg" (the
	// default) or "kvm,tcg" (KVM when it works, else TCG).
	Accel string
}

// Forward forwards TCP port Host on the host's loopback to port Guest of
// the guest.
type Forward struct {
	Host, Guest int
}

// VM is a running QEMU guest.
type VM struct {
	cfg      Config
	cmd      *exec.Cmd
	base     string // guestd's URL through the forwarded port
	client   *http.Client
	workDir  string
	started  time.Time
	bootTime time.Duration
	qemuOut  *limitedBuffer

	exited  chan struct{} // closed when QEMU has exited
	waitErr error         // QEMU's exit status, set before exited closes

	stopOnce sync.Once
	stopErr  error
	stopDone chan struct{} // closed when Stop has finished
	console  string        // the console as Stop left it, once the work dir is gone
}

// Result is what a command run in the guest did.
type Result struct {
	Stdout, Stderr string
	Exit           int
}

// Command is a command to run in the guest.
type Command struct {
	Argv    []string
	Env     []string // added to guestd's environment
	Dir     string
	Stdin   string
	Timeout time.Duration // how long the guest lets it run; from ctx's deadline when zero
}

// CheckHost returns an error saying what the host lacks to boot a guest:
// qemu-system-x86_64 or a statically linked busybox.
func CheckHost() error {
	var missing []string
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing = append(missing, "qemu-system-x86_64 not found; install qemu-system-x86")
	}
	if _, err := StaticBusybox(); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

// Start boots cfg.Kernel and waits until guestd answers. ctx bounds only
// the boot: the guest runs until Stop. On failure the error quotes the end
// of the console.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = DefaultMemoryMB
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = DefaultBootTimeout
	}
	if err := checkShares(cfg.Shares); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	// Another process may take the free port before QEMU does; QEMU then
	// fails to set up the forwarding, and another port is tried.
	var err error
	for range 3 {
		var vm *VM
		vm, err = start(ctx, cfg)
		if err == nil {
			return vm, nil
		}
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	return nil, fmt.Errorf("start qemu: %w", err)
}

var errPortTaken = errors.New("forwarded port taken")

func start(ctx context.Context, cfg Config) (*VM, error) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("%w; install qemu-system-x86", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	workDir, err := os.MkdirTemp("", "kcare-qemu-")
	if err != nil {
		return nil, err
	}
	if cfg.ConsoleLog == "" {
		cfg.ConsoleLog = filepath.Join(workDir, "console.log")
	}
	// The console exists, empty, before QEMU opens it.
	if err := os.WriteFile(cfg.ConsoleLog, nil, 0o644); err != nil {
		os.RemoveAll(workDir)
		return nil, err
	}

	vm := &VM{
		cfg:      cfg,
		base:     "http://127.0.0.1:" + strconv.Itoa(port),
		client:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		workDir:  workDir,
		qemuOut:  &limitedBuffer{max: 64 << 10},
		exited:   make(chan struct{}),
		stopDone: make(chan struct{}),
	}
	vm.cmd = exec.Command(qemu, qemuArgs(cfg, port)...)
	vm.cmd.Stdout = vm.qemuOut
	vm.cmd.Stderr = vm.qemuOut
	// QEMU dies with the test binary, whatever becomes of it.
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	vm.started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		os.RemoveAll(workDir)
		return nil, err
	}
	go func() {
		vm.waitErr = vm.cmd.Wait()
		close(vm.exited)
	}()

	if err := vm.waitForGuest(ctx); err != nil {
		vm.kill()
		if strings.Contains(vm.qemuOut.String(), "host forwarding rule") {
			err = fmt.Errorf("%w: %v", errPortTaken, err)
		}
		os.RemoveAll(workDir)
		return nil, err
	}
	vm.bootTime = time.Since(vm.started)
	return vm, nil
}

// qemuArgs returns QEMU's command line for cfg, forwarding the host's
// loopback port to guestd.
func qemuArgs(cfg Config, port int) []string {
	cmdline := []string{"console=ttyS0", "panic=-1"}
	for _, s := range cfg.Shares {
		cmdline = append(cmdline, "kcare.share="+s.Tag+":"+s.GuestPath)
	}
	if cfg.Append != "" {
		cmdline = append(cmdline, cfg.Append)
	}
	netdev := fmt.Sprintf("user,id=net0,hostfwd=tcp:127.0.0.1:%d-:%d", port, GuestdPort)
	for _, f := range cfg.Forwards {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.Host, f.Guest)
	}
	if cfg.Isolated {
		netdev += ",restrict=on"
	}
	accel := cfg.Accel
	if accel == "" {
		accel = "tcg"
	}
	var args []string
	for _, a := range strings.Split(accel, ",") {
		args = append(args, "-accel", a)
	}
	args = append(args,
		"-smp", "1",
		"-m", strconv.Itoa(cfg.MemoryMB),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-no-reboot",
		"-kernel", cfg.Kernel,
		"-append", strings.Join(cmdline, " "),
		"-chardev", "file,id=console,path="+optionValue(cfg.ConsoleLog),
		"-serial", "chardev:console",
		"-netdev", netdev,
		"-device", "virtio-net-pci,netdev=net0",
	)
	if cfg.Initrd != "" {
		args = append(args, "-initrd", cfg.Initrd)
	}
	if cfg.Disk != "" {
		args = append(args, "-drive", "file="+optionValue(cfg.Disk)+",if=virtio,format=raw")
	}
	for i, s := range cfg.Shares {
		args = append(args, "-virtfs", fmt.Sprintf("local,path=%s,mount_tag=%s,security_model=none,id=fs%d", optionValue(s.HostDir), s.Tag, i))
	}
	return args
}

// optionValue escapes a value for QEMU's comma-separated options.
func optionValue(s string) string {
	return strings.ReplaceAll(s, ",", ",,")
}

func checkShares(shares []Share) error {
	for _, s := range shares {
		if s.Tag == "" || len(s.Tag) > 31 || strings.Trim(s.Tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
			return fmt.Errorf("share tag %q: want 1 to 31 letters, digits, '_' or '-'", s.Tag)
		}
		if !filepath.IsAbs(s.GuestPath) || strings.ContainsAny(s.GuestPath, " \t\n,") {
			return fmt.Errorf("share %s: guest path %q must be absolute, without spaces or commas", s.Tag, s.GuestPath)
		}
		if fi, err := os.Stat(s.HostDir); err != nil || !fi.IsDir() {
			return fmt.Errorf("share %s: host dir %q is not a directory", s.Tag, s.HostDir)
		}
	}
	return nil
}

// freePort returns a TCP port on the loopback that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitForGuest polls guestd's /ping until it answers, QEMU exits, ctx is
// done or the boot timeout passes.
func (vm *VM) waitForGuest(ctx context.Context) error {
	timeout := vm.cfg.BootTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = vm.ping(pctx)
		pcancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-vm.exited:
			return fmt.Errorf("qemu exited before the guest answered: %v\n%s%s", vm.waitErr, vm.qemuOutput(), vm.consoleTail())
		case <-ctx.Done():
			return fmt.Errorf("waiting up to %v for the guest to answer: %v (last: %v)\n%s%s", timeout, ctx.Err(), lastErr, vm.qemuOutput(), vm.consoleTail())
		case <-tick.C:
		}
	}
}

func (vm *VM) ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, vm.base+"/ping", nil)
	if err != nil {
		return err
	}
	resp, err := vm.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

// BootTime returns how long the guest took from Start to guestd's first answer.
func (vm *VM) BootTime() time.Duration { return vm.bootTime }

// Console returns what the serial console has printed so far.
func (vm *VM) Console() string {
	select {
	case <-vm.stopDone:
		return vm.console
	default:
		return vm.readConsole()
	}
}

func (vm *VM) readConsole() string {
	data, _ := os.ReadFile(vm.cfg.ConsoleLog)
	return string(data)
}

// consoleTail returns the console's last lines, introduced for an error.
func (vm *VM) consoleTail() string {
	return "last " + strconv.Itoa(consoleTailLines) + " lines of the console:\n" + lastLines(vm.Console(), consoleTailLines)
}

func (vm *VM) qemuOutput() string {
	out := strings.TrimSpace(vm.qemuOut.String())
	if out == "" {
		return ""
	}
	return "qemu said: " + out + "\n"
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Run runs argv in the guest.
func (vm *VM) Run(ctx context.Context, argv ...string) (Result, error) {
	return vm.Exec(ctx, Command{Argv: argv})
}

// RunEnv runs argv in the guest with env added to the environment.
func (vm *VM) RunEnv(ctx context.Context, env []string, argv ...string) (Result, error) {
	return vm.Exec(ctx, Command{Argv: argv, Env: env})
}

// Shell runs script with /bin/sh -c in the guest.
func (vm *VM) Shell(ctx context.Context, script string) (Result, error) {
	return vm.Exec(ctx, Command{Argv: []string{"/bin/sh", "-c", script}})
}

// Exec runs c in the guest. A command that exits non-zero is no error: its
// Result says so. The error is for a command that could not start or did
// not finish in time, and for a guest that did not answer.
func (vm *VM) Exec(ctx context.Context, c Command) (Result, error) {
	if len(c.Argv) == 0 {
		return Result{}, errors.New("run in guest: empty argv")
	}
	timeout := c.Timeout
	if d, ok := ctx.Deadline(); ok && timeout == 0 {
		// Leave the guest time to answer before ctx ends.
		timeout = time.Until(d) - time.Second
		if timeout <= 0 {
			return Result{}, fmt.Errorf("run %q in guest: %w", c.Argv, context.DeadlineExceeded)
		}
	}
	body, err := json.Marshal(runRequest{
		Argv: c.Argv, Env: c.Env, Dir: c.Dir, Stdin: c.Stdin,
		TimeoutMS: timeout.Milliseconds(),
	})
	if err != nil {
		return Result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, vm.base+"/run", bytes.NewReader(body))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := vm.client.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("run %q in guest: %w\n%s", c.Argv, err, vm.consoleTail())
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return Result{}, fmt.Errorf("run %q in guest: %w\n%s", c.Argv, err, vm.consoleTail())
	}
	if resp.StatusCode != http.StatusOK {
		return Result{}, fmt.Errorf("run %q in guest: %s: %s", c.Argv, resp.Status, strings.TrimSpace(string(data)))
	}
	var rr runResponse
	if err := json.Unmarshal(data, &rr); err != nil {
		return Result{}, fmt.Errorf("run %q in guest: %w", c.Argv, err)
	}
	res := Result{Stdout: rr.Stdout, Stderr: rr.Stderr, Exit: rr.Exit}
	if rr.Error != "" {
		return res, fmt.Errorf("run %q in guest: %s", c.Argv, rr.Error)
	}
	return res, nil
}

// runRequest and runResponse are guestd's /run messages.
type runRequest struct {
	Argv      []string `json:"argv"`
	Env       []string `json:"env,omitempty"`
	Dir       string   `json:"dir,omitempty"`
	Stdin     string   `json:"stdin,omitempty"`
	TimeoutMS int64    `json:"timeout_ms,omitempty"`
}

type runResponse struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Exit   int    `json:"exit"`
	Error  string `json:"error"`
}

// Stop powers the guest off, waits up to 20s for QEMU to exit, and kills
// it after that. It reports a guest that had to be killed or whose kernel
// panicked. Calling Stop again returns the first call's error.
func (vm *VM) Stop() error {
	vm.stopOnce.Do(func() { vm.stopErr = vm.stop() })
	return vm.stopErr
}

func (vm *VM) stop() error {
	var err error
	select {
	case <-vm.exited:
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		perr := vm.post(ctx, "/poweroff")
		cancel()
		select {
		case <-vm.exited:
		case <-time.After(stopTimeout):
			vm.kill()
			err = fmt.Errorf("stop qemu: waited %v for the guest to power off (poweroff: %v); killed qemu", stopTimeout, perr)
		}
	}
	vm.console = vm.readConsole()
	close(vm.stopDone)
	os.RemoveAll(vm.workDir)
	if err == nil && strings.Contains(vm.console, "Kernel panic") {
		err = errors.New("stop qemu: the guest kernel panicked")
	}
	if err != nil {
		return fmt.Errorf("%w\n%s", err, vm.consoleTail())
	}
	return nil
}

func (vm *VM) post(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, vm.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := vm.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

// Wait waits up to timeout for QEMU to exit by itself, as it does when
// the guest powers off or reboots (QEMU runs with -no-reboot), and
// reports whether it did. Stop still cleans up after it.
func (vm *VM) Wait(timeout time.Duration) bool {
	select {
	case <-vm.exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

// kill kills QEMU and waits for it to exit.
func (vm *VM) kill() {
	vm.cmd.Process.Kill()
	<-vm.exited
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Run boots cfg.Kernel with an initramfs whose Image.Init powers the
// guest off when it is done (no guestd), waits for QEMU to exit, and
// returns the serial console. When ctx ends first, QEMU is killed and the
// error says so; the console so far is returned all the same.
func Run(ctx context.Context, cfg Config) (string, error) {
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = DefaultMemoryMB
	}
	if err := checkShares(cfg.Shares); err != nil {
		return "", fmt.Errorf("run qemu: %w", err)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", fmt.Errorf("%w; install qemu-system-x86", err)
	}
	workDir, err := os.MkdirTemp("", "kcare-qemu-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(workDir)
	if cfg.ConsoleLog == "" {
		cfg.ConsoleLog = filepath.Join(workDir, "console.log")
	}
	if err := os.WriteFile(cfg.ConsoleLog, nil, 0o644); err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	out := &limitedBuffer{max: 64 << 10}
	cmd := exec.Command(qemu, qemuArgs(cfg, port)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err = <-exited:
		if err != nil {
			err = fmt.Errorf("qemu: %w\n%s", err, out.String())
		}
	case <-ctx.Done():
		cmd.Process.Kill()
		<-exited
		err = fmt.Errorf("run qemu: the guest did not power off: %w", ctx.Err())
	}
	console, rerr := os.ReadFile(cfg.ConsoleLog)
	if err == nil && rerr != nil {
		err = rerr
	}
	return string(console), err
}
