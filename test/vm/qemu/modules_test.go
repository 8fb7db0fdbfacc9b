package qemu

import (
	"slices"
	"testing"
)

// modulesDep is an excerpt of modules.dep of Debian's 6.1.0-56-amd64.
const modulesDep = `kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`

func TestLoadOrder(t *testing.T) {
	deps, err := parseModulesDep([]byte(modulesDep))
	if err != nil {
		t.Fatal(err)
	}
	builtin := parseBuiltin([]byte("kernel/fs/ext4/ext4.ko\nkernel/drivers/block/loop.ko\n"))
	tests := []struct {
		name    string
		modules []string
		want    []string
	}{
		{"base", BaseModules, []string{
			"kernel/drivers/virtio/virtio_ring.ko",
			"kernel/drivers/virtio/virtio.ko",
			"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
			"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
			"kernel/drivers/virtio/virtio_pci.ko",
			"kernel/net/core/failover.ko",
			"kernel/drivers/net/net_failover.ko",
			"kernel/drivers/net/virtio_net.ko",
			"kernel/net/9p/9pnet.ko",
			"kernel/net/9p/9pnet_virtio.ko",
			"kernel/fs/netfs/netfs.ko",
			"kernel/fs/fscache/fscache.ko",
			"kernel/fs/9p/9p.ko",
		}},
		{"dash_name", []string{"virtio-rng"}, []string{
			"kernel/drivers/virtio/virtio_ring.ko",
			"kernel/drivers/virtio/virtio.ko",
			"kernel/drivers/char/hw_random/virtio-rng.ko",
		}},
		{"builtin", []string{"ext4", "loop"}, nil},
		{"twice", []string{"9pnet", "9pnet"}, []string{"kernel/net/9p/9pnet.ko"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadOrder(tt.modules, deps, builtin)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("loadOrder(%q) = %q; want %q", tt.modules, got, tt.want)
			}
		})
	}
	if _, err := loadOrder([]string{"no_such_module"}, deps, builtin); err == nil {
		t.Error("loadOrder of an unknown module succeeded")
	}
}
