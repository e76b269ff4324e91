package disk

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/diskfs/go-diskfs/backend"
)

// readOnlyStorage is a go-diskfs backend.Storage over an io.ReaderAt of known size: how go-diskfs
// reads a disk that is not a raw file (an NBD export of a qcow2) without ever being able to
// write to it.
type readOnlyStorage struct {
	r    io.ReaderAt
	size int64

	mu  sync.Mutex
	pos int64 // for Read and Seek
}

var _ backend.Storage = (*readOnlyStorage)(nil)

func (s *readOnlyStorage) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	short := false
	if rest := s.size - off; int64(len(p)) > rest {
		p, short = p[:rest], true
	}
	n, err := s.r.ReadAt(p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

func (s *readOnlyStorage) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.ReadAt(p, s.pos)
	s.pos += int64(n)
	return n, err
}

func (s *readOnlyStorage) Seek(offset int64, whence int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.pos
	case io.SeekEnd:
		offset += s.size
	default:
		return 0, errors.New("seek: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	s.pos = offset
	return offset, nil
}

func (s *readOnlyStorage) Stat() (fs.FileInfo, error) { return storageInfo{size: s.size}, nil }
func (s *readOnlyStorage) Close() error               { return nil }
func (s *readOnlyStorage) Sys() (*os.File, error)     { return nil, backend.ErrNotSuitable }
func (s *readOnlyStorage) Path() string               { return "" }
func (s *readOnlyStorage) Writable() (backend.WritableFile, error) {
	return nil, backend.ErrIncorrectOpenMode
}

// storageInfo makes go-diskfs treat a readOnlyStorage as a regular file of its size.
type storageInfo struct{ size int64 }

func (i storageInfo) Name() string       { return "image" }
func (i storageInfo) Size() int64        { return i.size }
func (i storageInfo) Mode() fs.FileMode  { return 0o444 }
func (i storageInfo) ModTime() time.Time { return time.Time{} }
func (i storageInfo) IsDir() bool        { return false }
func (i storageInfo) Sys() any           { return nil }
