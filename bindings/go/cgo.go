//go:build !brokk_static

package brokk

// The library is found through pkg-config (brokk.pc, which `make install` writes under
// PREFIX/lib/pkgconfig, and the Debian package libbrokk-dev under /usr): set PKG_CONFIG_PATH to
// PREFIX/lib/pkgconfig for a prefix pkg-config does not search by default. brokk.pc carries an
// rpath for such prefixes, so programs run without LD_LIBRARY_PATH. `-tags brokk_static` links
// libbrokk.a instead (cgo_static.go). In this checkout, `make test-go` points PKG_CONFIG_PATH
// at a brokk.pc for target/release (packaging/dev-pkgconfig.sh). CGO_CFLAGS and CGO_LDFLAGS,
// when set, come first and can point elsewhere (see the package documentation).

/*
#cgo pkg-config: brokk
*/
import "C"
