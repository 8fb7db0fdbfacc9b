package qemu

// PowerCut kills QEMU at once, as pulling the guest's plug: what the
// guest had not yet written to its disk (Config.Disk) is lost, as on a
// real power failure. Stop still cleans up after it.
func (vm *VM) PowerCut() {
	select {
	case <-vm.exited:
	default:
		vm.kill()
	}
}
