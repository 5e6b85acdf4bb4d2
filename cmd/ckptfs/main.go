// Command ckptfs opens Hyper-V checkpoints (VHDX/AVHDX chains) on Linux:
// it describes them, exports them and mounts them as folders.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
	flag "github.com/spf13/pflag"

	"github.com/ckptfs/ckptfs/chain"
)

// command is one subcommand.
type command struct {
	summary string
	usage   string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(name string, c command) { commands[name] = c }

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "ckptfs opens Hyper-V checkpoints (VHDX/AVHDX chains) on Linux.")
	fmt.Fprintln(w, "\nUsage: ckptfs COMMAND [flags] ...\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'ckptfs COMMAND --help' for a command's flags.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	logrus.SetOutput(stderr)
	logrus.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	if lvl, err := logrus.ParseLevel(os.Getenv("CKPTFS_LOG")); err == nil {
		logrus.SetLevel(lvl)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	if args[0] == "--version" || args[0] == "version" {
		fmt.Fprintln(stdout, "ckptfs", version)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ckptfs: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := c.run(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ckptfs %s: %v\nusage: ckptfs %s %s\n", args[0], strings.TrimPrefix(err.Error(), "usage: "), args[0], c.usage)
		return 2
	default:
		fmt.Fprintf(stderr, "ckptfs %s: %v\n", args[0], advise(err))
		return 1
	}
}

// advise adds to err what the user can do about it with the flags every
// command that opens a chain has (chainFlags). Errors already advised are
// returned as they are.
func advise(err error) error {
	var a *advised
	if errors.As(err, &a) {
		return err
	}
	switch {
	case errors.Is(err, chain.ErrParentNotFound):
		return &advised{err, "copy the parent beside it or add --search-path DIR"}
	case errors.Is(err, chain.ErrLinkageMismatch):
		return &advised{err, "use --ignore-linkage to open it anyway"}
	}
	return err
}

// advised is an error with advice for the user.
type advised struct {
	err    error
	advice string
}

func (a *advised) Error() string { return a.err.Error() + "; " + a.advice }
func (a *advised) Unwrap() error { return a.err }

var version = "dev"

// newFlags returns a flag set for a subcommand that prints its usage.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ckptfs %s %s\n\n%s\n\nFlags:\n", name, commands[name].usage, commands[name].summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags and checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if n := fs.NArg(); n < minArgs || (maxArgs >= 0 && n > maxArgs) {
		return fmt.Errorf("%w: wrong number of arguments", errUsage)
	}
	return nil
}

// chainFlags are the flags of every command that opens a chain.
type chainFlags struct {
	searchPaths   []string
	ignoreLinkage bool
}

func (c *chainFlags) add(fs *flag.FlagSet) {
	fs.StringArrayVar(&c.searchPaths, "search-path", nil, "also look for parent files in `DIR` (repeatable)")
	fs.BoolVar(&c.ignoreLinkage, "ignore-linkage", false, "accept a parent whose DataWriteGuid does not match the child's parent_linkage")
}
