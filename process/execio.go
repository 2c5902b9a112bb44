package process

import (
	"io"
	"os"
	"sync"
	"time"
)

// maxStderrTail is how much of the end of a program's stderr goes into its error.
const maxStderrTail = 4 << 10

// pipes are the exec processor's three pipes to one program. The child's ends are given to
// os/exec and closed once it started; the parent's ends are served by goroutines of ours (serve)
// and closed by finish, which waits for those goroutines.
type pipes struct {
	childIn, childOut, childErr *os.File // the program's ends
	inW, outR, errR             *os.File // ours: we write its stdin, read its stdout and stderr

	closeIn sync.Once
	copied  chan struct{} // closed when the stdin copier returned
	read    chan struct{} // closed when stdout and stderr are both at their end (or closed)

	// Set by the readers, read after read is closed.
	out     []byte // stdout, when it stayed within the cap
	over    bool   // stdout went past the cap: reading stopped and over was called
	errTail []byte // the last maxStderrTail bytes of stderr
}

func openPipes() (*pipes, error) {
	p := &pipes{copied: make(chan struct{}), read: make(chan struct{})}
	var err error
	if p.childIn, p.inW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.outR, p.childOut, err = os.Pipe(); err != nil {
		p.closeChildEnds()
		p.inW.Close()
		return nil, err
	}
	if p.errR, p.childErr, err = os.Pipe(); err != nil {
		p.closeChildEnds()
		p.inW.Close()
		p.outR.Close()
		return nil, err
	}
	return p, nil
}

// closeChildEnds closes our copies of the program's ends, once it has its own (or failed to
// start): the readers then see the end of stdout and stderr when the last process holding
// them exits, and the stdin copier an EPIPE when none reads any more.
func (p *pipes) closeChildEnds() {
	for _, f := range []*os.File{p.childIn, p.childOut, p.childErr} {
		if f != nil {
			f.Close()
		}
	}
}

// abandon closes our ends of a program that did not start.
func (p *pipes) abandon() {
	p.inW.Close()
	p.outR.Close()
	p.errR.Close()
}

// serve starts the goroutines: one copies in to the program's stdin, one reads its stdout up to
// max bytes (then calls over, once, and stops reading), one keeps the tail of its stderr.
func (p *pipes) serve(in io.Reader, max int, over func()) {
	go func() {
		defer close(p.copied)
		io.Copy(p.inW, in) // ends at the input's end or error, or EPIPE once no process reads
		p.closeStdin()
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.out, p.over = readCapped(p.outR, max)
		if p.over {
			over()
		}
	}()
	go func() {
		defer wg.Done()
		p.errTail = readTail(p.errR, maxStderrTail)
	}()
	go func() { wg.Wait(); close(p.read) }()
}

func (p *pipes) closeStdin() { p.closeIn.Do(func() { p.inW.Close() }) }

// wait reports whether stdout and stderr were both read to their end within d.
func (p *pipes) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.read:
		return true
	case <-t.C:
		return false
	}
}

// finish ends the exchange with the program and returns once every goroutine of serve has:
// our read ends are closed (a reader still blocked, by a process that escaped the kill of the
// group, returns at once), then our stdin end (a copier blocked on a full pipe returns).
func (p *pipes) finish() {
	p.outR.Close()
	p.errR.Close()
	<-p.read
	p.closeStdin()
	<-p.copied
}

// readCapped reads r to its end and returns what it read, or stops once r gives more than max
// bytes and reports over. It reads straight into a buffer that doubles as it fills, up to max:
// memory stays within twice max whatever r gives.
func readCapped(r io.Reader, max int) (data []byte, over bool) {
	data = make([]byte, 0, min(64<<10, max))
	var probe [1]byte // once data holds max bytes: a byte more is over
	for {
		if len(data) == cap(data) && cap(data) < max {
			grown := make([]byte, len(data), min(2*cap(data), max))
			copy(grown, data)
			data = grown
		}
		into := data[len(data):cap(data)]
		if len(into) == 0 {
			into = probe[:]
		}
		n, err := r.Read(into)
		if len(data)+n > max {
			return nil, true
		}
		data = data[:len(data)+n]
		if err != nil {
			return data, false
		}
	}
}

// readTail reads r to its end and returns its last max bytes, never holding more than max plus
// one read.
func readTail(r io.Reader, max int) []byte {
	buf := make([]byte, max)
	var tail []byte
	for {
		n, err := r.Read(buf)
		tail = append(tail, buf[:n]...)
		if extra := len(tail) - max; extra > 0 {
			tail = append(tail[:0], tail[extra:]...)
		}
		if err != nil {
			return tail
		}
	}
}
