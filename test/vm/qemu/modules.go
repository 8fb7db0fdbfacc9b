package qemu

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"
)

// BaseModules are the modules every image loads: the virtio PCI transport,
// the virtio network card that carries guestd's port, and 9p over virtio
// for the shares. Debian builds them all as modules.
var BaseModules = []string{"virtio_pci", "virtio_net", "9pnet_virtio", "9p"}

// moduleName returns the name the kernel knows a module file by:
// "kernel/drivers/char/hw_random/virtio-rng.ko" is "virtio_rng".
func moduleName(file string) string {
	name := path.Base(file)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		name = strings.TrimSuffix(name, ext)
	}
	name = strings.TrimSuffix(name, ".ko")
	return strings.ReplaceAll(name, "-", "_")
}

// parseModulesDep parses modules.dep: for each module name, its file and
// the files it depends on, relative to the modules directory.
func parseModulesDep(data []byte) (map[string][]string, error) {
	deps := make(map[string][]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: no colon", n)
		}
		deps[moduleName(file)] = append([]string{file}, strings.Fields(rest)...)
	}
	return deps, sc.Err()
}

// parseBuiltin parses modules.builtin into the set of built-in module names.
func parseBuiltin(data []byte) map[string]bool {
	builtin := make(map[string]bool)
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			builtin[moduleName(line)] = true
		}
	}
	return builtin
}

// loadOrder returns the module files to insmod, in order, so that names
// and everything they depend on are loaded, each after its dependencies
// and once. Built-in modules are left out.
func loadOrder(names []string, deps map[string][]string, builtin map[string]bool) ([]string, error) {
	var order []string
	seen := make(map[string]bool)
	var visit func(file string)
	visit = func(file string) {
		name := moduleName(file)
		if seen[name] {
			return
		}
		seen[name] = true
		entry := deps[name]
		// modules.dep lists a module's dependencies with the ones
		// loaded first at the end, as modprobe reads them.
		for i := len(entry) - 1; i >= 1; i-- {
			visit(entry[i])
		}
		order = append(order, file)
	}
	for _, n := range names {
		n = moduleName(n)
		entry, ok := deps[n]
		if !ok {
			if builtin[n] {
				continue
			}
			return nil, fmt.Errorf("module %s is neither in modules.dep nor built in", n)
		}
		visit(entry[0])
	}
	return order, nil
}
