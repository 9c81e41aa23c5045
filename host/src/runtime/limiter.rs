//! The memory an app may hold: one budget in bytes for all the linear
//! memories and tables of its store together, plus caps on how many
//! instances, memories and tables it may create.
//!
//! wasmtime's own `StoreLimits` caps each memory separately, so a
//! component with many memories could hold many times its cap; this
//! limiter adds them up.

use wasmtime::ResourceLimiter;

/// Bytes one table element is accounted at: a function reference is a
/// pointer and a type index on the host.
const TABLE_ELEMENT_BYTES: usize = 16;

/// The caps of one store, and what it holds now.
#[derive(Debug)]
pub(crate) struct AppLimiter {
    /// The budget for memories and tables together, in bytes.
    memory_bytes: usize,
    /// Core instances the store may create.
    max_instances: usize,
    /// Linear memories it may create.
    max_memories: usize,
    /// Tables it may create.
    max_tables: usize,
    /// Elements one table may have.
    max_table_elements: usize,
    /// Bytes its memories and tables take now.
    used: usize,
}

impl AppLimiter {
    /// A limiter with nothing held yet.
    pub(crate) fn new(
        memory_bytes: usize,
        max_instances: usize,
        max_memories: usize,
        max_tables: usize,
        max_table_elements: usize,
    ) -> Self {
        Self {
            memory_bytes,
            max_instances,
            max_memories,
            max_tables,
            max_table_elements,
            used: 0,
        }
    }

    /// Bytes the store's memories and tables take now.
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// Moves `used` from `current` to `desired` bytes of one resource, if
    /// the budget allows.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.memory_bytes {
            return false;
        }
        self.used = total;
        true
    }
}

impl ResourceLimiter for AppLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            return Ok(false);
        }
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn memories(&self) -> usize {
        self.max_memories
    }

    fn tables(&self) -> usize {
        self.max_tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut limiter = AppLimiter::new(100 << 10, 10, 10, 10, 1000);
        // Two memories of 40 KiB fit; a third does not.
        assert!(limiter.memory_growing(0, 40 << 10, None).unwrap());
        assert!(limiter.memory_growing(0, 40 << 10, None).unwrap());
        assert!(!limiter.memory_growing(0, 40 << 10, None).unwrap());
        // Growing one of them within what is left does.
        assert!(limiter.memory_growing(40 << 10, 50 << 10, None).unwrap());
        assert_eq!(limiter.used(), 90 << 10);
        // A table counts against the same budget.
        assert!(!limiter.table_growing(0, 1000, None).unwrap());
        assert!(limiter.table_growing(0, 100, None).unwrap());
        assert!(!limiter.table_growing(0, 1001, None).unwrap());
    }
}
