package fdcount

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/portier/portier/internal/handletable"
)

// fileType is the object type index of file objects, learned once from a
// handle known to be one.
var fileType = sync.OnceValues(func() (uint16, error) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return 0, fmt.Errorf("fdcount: %w", err)
	}
	defer f.Close()
	var typ uint16
	found := false
	err = handletable.Each(os.Getpid(), func(e *handletable.Entry) {
		if e.HandleValue == f.Fd() {
			typ, found = e.ObjectTypeIndex, true
		}
	})
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, errors.New("fdcount: the handle table does not list a file this process opened")
	}
	return typ, nil
})

// count returns the number of this process's handles to file objects.
// Counting every handle would not do: the Go runtime opens a thread
// handle, events and timers for each OS thread it starts and keeps them
// while the thread is parked, so the total grows with the number of
// threads a test happened to need. GetProcessHandleCount would also count
// those, and Wine answers it with 0.
func count() (int, error) {
	typ, err := fileType()
	if err != nil {
		return 0, err
	}
	n := 0
	err = handletable.Each(os.Getpid(), func(e *handletable.Entry) {
		if e.ObjectTypeIndex == typ {
			n++
		}
	})
	return n, err
}
