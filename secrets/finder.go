package secrets

import "bytes"

// Hit is where a secret's bytes were found in a stream: the first offset, and how many times.
type Hit struct {
	Secret string
	Offset int64
	Count  int
}

// Finder looks for a Set's needles in bytes handed to it in order of offset, such as the data
// extents of a disk image. A needle that straddles two writes is found when the writes are
// contiguous: Finder keeps the tail of the last one.
type Finder struct {
	needles []Needle
	maxLen  int
	tail    []byte // the last maxLen-1 bytes seen, ending at end
	end     int64
	hits    map[string]*Hit
	order   []string
}

// NewFinder makes a Finder for s's needles.
func NewFinder(s *Set) *Finder {
	f := &Finder{needles: s.Needles(), hits: map[string]*Hit{}}
	for _, n := range f.needles {
		f.maxLen = max(f.maxLen, len(n.Bytes))
	}
	return f
}

// Write looks at p, which starts at offset off. Offsets must not go backwards.
func (f *Finder) Write(off int64, p []byte) {
	if len(f.tail) > 0 && off == f.end {
		// Matches that start in the carried tail and end in p: the rest of each side is
		// searched on its own.
		seam := append(f.tail[:len(f.tail):len(f.tail)], p[:min(len(p), f.maxLen-1)]...)
		f.search(seam, f.end-int64(len(f.tail)), func(i, n int) bool { return i < len(f.tail) && i+n > len(f.tail) })
	}
	f.search(p, off, func(int, int) bool { return true })
	if len(p) >= f.maxLen-1 || off != f.end {
		f.tail = append(f.tail[:0], p[len(p)-min(len(p), max(f.maxLen-1, 0)):]...)
	} else {
		f.tail = append(f.tail, p...)
		f.tail = f.tail[len(f.tail)-min(len(f.tail), f.maxLen-1):]
	}
	f.end = off + int64(len(p))
}

// search records each needle found in buf, which starts at base, where keep says so.
func (f *Finder) search(buf []byte, base int64, keep func(i, n int) bool) {
	for _, n := range f.needles {
		for from := 0; ; {
			i := bytes.Index(buf[from:], n.Bytes)
			if i < 0 {
				break
			}
			if keep(from+i, len(n.Bytes)) {
				f.hit(n.Secret, base+int64(from+i))
			}
			from += i + 1
		}
	}
}

func (f *Finder) hit(secret string, at int64) {
	h, ok := f.hits[secret]
	if !ok {
		h = &Hit{Secret: secret, Offset: at}
		f.hits[secret] = h
		f.order = append(f.order, secret)
	}
	h.Offset = min(h.Offset, at)
	h.Count++
}

// Hits are the secrets found, in the order they were first found.
func (f *Finder) Hits() []Hit {
	out := make([]Hit, 0, len(f.order))
	for _, s := range f.order {
		out = append(out, *f.hits[s])
	}
	return out
}
