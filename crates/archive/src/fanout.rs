//! The bound on descriptor fan-out: an index of many entries naming one manifest of many layers is
//! a few kilobytes compressed, yet walking it naively visits entries × layers descriptors (an
//! index of 50,000 entries over a manifest of 50,000 layers: 2.5 billion). Every walk of an
//! archive's descriptors — unpack's and `layerlift check`'s ([`crate::oci`]) and push's catalog
//! ([`crate::catalog`]) — counts each descriptor it reaches, through every reference, against
//! [`MAX_DESCRIPTORS`] and refuses the archive past it, before its memory or time grow with the
//! product.

use crate::ArchiveError;
use layerlift_manifest::Digest;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// The most descriptors (index entries, manifests, configs and layers, each counted as often as
/// it is referenced) one archive may fan out to. A `docker save` of 500 images of 100 layers each
/// reaches 51,000.
pub const MAX_DESCRIPTORS: usize = 100_000;

/// What is left of the budget, and what each document already walked cost.
#[derive(Debug)]
pub(crate) struct FanOut {
    left: Cell<usize>,
    exceeded: Cell<bool>,
    /// Descriptors under each document walked once (itself included): another reference to it
    /// costs as much again, and is charged without walking it.
    costs: RefCell<HashMap<Digest, usize>>,
}

impl Default for FanOut {
    fn default() -> Self {
        FanOut::new(MAX_DESCRIPTORS)
    }
}

impl FanOut {
    pub(crate) fn new(limit: usize) -> Self {
        FanOut {
            left: Cell::new(limit),
            exceeded: Cell::new(false),
            costs: RefCell::default(),
        }
    }

    /// Charge `n` descriptors; false (from then on) when that goes over the budget.
    pub(crate) fn take(&self, n: usize) -> bool {
        match self.left.get().checked_sub(n) {
            Some(left) if !self.exceeded.get() => {
                self.left.set(left);
                true
            }
            _ => {
                self.exceeded.set(true);
                false
            }
        }
    }

    /// Descriptors left in the budget.
    pub(crate) fn left(&self) -> usize {
        self.left.get()
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    /// What walking the document `digest` cost before, if it was walked.
    pub(crate) fn cost_of(&self, digest: &Digest) -> Option<usize> {
        self.costs.borrow().get(digest).copied()
    }

    /// Remember that walking `digest` cost `cost` descriptors.
    pub(crate) fn remember(&self, digest: Digest, cost: usize) {
        self.costs.borrow_mut().insert(digest, cost);
    }

    /// The error for an archive over the budget.
    pub(crate) fn error(&self) -> ArchiveError {
        ArchiveError::Limit(format!(
            "its index, manifests and layers fan out to more than {MAX_DESCRIPTORS} descriptors \
             (every index entry times the manifests and layers it reaches)"
        ))
    }
}
