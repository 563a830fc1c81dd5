//! Giving freed memory back to the system after the agent's large, brief
//! allocations (a snapshot collected aside, a full load of the sets, a
//! listing of them): glibc otherwise keeps freed heap in its arenas, and a
//! gateway's agent would sit at its peak for good.

/// Returns free heap memory to the system (a no-op off glibc).
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands free pages back; it touches no live
    // allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
