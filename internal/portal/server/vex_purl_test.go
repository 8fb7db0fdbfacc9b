package server

import "testing"

func TestKernelPURL(t *testing.T) {
	tests := []struct{ release, want string }{
		{"6.1.0-56-amd64", "pkg:deb/debian/linux-image-6.1.0-56-amd64"},
		{"6.1.0-56-cloud-amd64", "pkg:deb/debian/linux-image-6.1.0-56-cloud-amd64"},
		{"5.14.0-427.13.1.el9_4.x86_64", "pkg:rpm/redhat/kernel@5.14.0-427.13.1.el9_4?arch=x86_64"},
		{"4.18.0-553.el8_10.aarch64", "pkg:rpm/redhat/kernel@4.18.0-553.el8_10?arch=aarch64"},
		{"6.8.9-300.fc40.x86_64", "pkg:rpm/redhat/kernel@6.8.9-300.fc40?arch=x86_64"},
	}
	for _, tt := range tests {
		if got := kernelPURL(tt.release); got != tt.want {
			t.Errorf("kernelPURL(%q) = %q, want %q", tt.release, got, tt.want)
		}
	}
}
