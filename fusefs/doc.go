// Package fusefs renders a checkpoint.Node tree as a FUSE file system. It
// knows nothing about disk formats: everything it shows was computed as
// plain data before mounting (package checkpoint), except folders listed
// lazily through Node.List and file systems rendered from a volume.FS
// (Node.FS).
//
// It speaks the FUSE protocol through go-fuse's raw interface
// (fuse.RawFileSystem) rather than go-fuse's node tree, so that it controls
// what each request costs. The tree never changes while mounted, and that
// is what the mount is tuned for (docs/mount.md has the measurements):
//
//   - Few requests per file. A read-only mount answers OPEN with ENOSYS,
//     which tells the kernel (FUSE_NO_OPEN_SUPPORT) never to send OPEN or
//     RELEASE again and to keep file pages cached across opens; FLUSH is
//     answered ENOSYS for the same reason. Entry and attribute timeouts
//     are long (one hour). Listings come with the attributes of their
//     entries (READDIRPLUS) for the processes that stat what they list,
//     so that walking a tree needs no LOOKUP per file, and without them
//     for the others (plus.go); the kernel keeps complete listings.
//   - Cheap requests. The inode table is one map keyed by the FUSE node
//     ID, which is also the inode number shown (inodes.go); a file of a
//     volume is opened once per inode and its reader kept with the inode;
//     a folder's listing is kept while the kernel reads it.
//   - A table that shrinks. Inodes are dropped when the kernel forgets
//     them (FORGET), so a walk of a million files does not keep a million
//     inodes once the kernel lets go of them.
//   - Disk data is spliced from the layer files to the kernel where it
//     lies unchanged in them (splice.go), and no lock is taken on the read
//     path (Node.Data must be safe for concurrent ReadAt, as chain.Chain
//     is).
//
// Mounts are read-only ("ro") unless Options.Writable; then nodes with a
// Writer accept writes and every other node refuses them with EROFS.
package fusefs
