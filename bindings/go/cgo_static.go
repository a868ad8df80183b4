//go:build brokk_static

package brokk

// With -tags brokk_static the library is linked from libbrokk.a (brokk-static.pc, written by
// `make install` next to brokk.pc): the program then needs no libbrokk.so at run time. cgo
// runs `pkg-config --static --cflags --libs brokk-static`, which names the archive by path and
// adds what the Rust standard library inside it needs (Libs.private).

/*
#cgo pkg-config: --static brokk-static
*/
import "C"
