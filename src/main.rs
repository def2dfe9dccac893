//! The `evidenced` binary: parses the command line and hands over to `cli`.

fn main() -> std::process::ExitCode {
    // Large buffers (upload parts, copy chunks) always come from mmap and go back to the OS when
    // freed, and at most two malloc arenas exist: glibc's default raises the mmap threshold after
    // the first free and keeps an arena per thread, which lets RSS creep up with file size.
    // SAFETY: mallopt is called first thing, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    evidenced::cli::main()
}
