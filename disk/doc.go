// Package disk owns what is done to disk images: the output formats, shrinking, bmap and OVA,
// and reading a shut-down image's partitions and filesystems. Image formats are qemu-img's
// business, run through internal/qemuimg: this package drives the real tool and never
// re-implements a format it handles.
package disk
