//! Reused frame buffers: a [`FramePool`] hands out [`PooledFrame`]s that return to it when
//! GStreamer is done with them, so a job allocates its frames once.

/// Reusable frame buffers: a frame handed to GStreamer comes back here when the encoder is
/// done with it, so no frame allocation (and no fresh pages to fault in) per frame.
#[derive(Clone)]
pub struct FramePool {
    free: Free,
    size: usize,
    /// What a new buffer starts as (zeros when `None`).
    initial: Option<std::sync::Arc<[u8]>>,
}

/// Idle buffers, each with its tag.
type Free = std::sync::Arc<std::sync::Mutex<Vec<(Vec<u8>, u64)>>>;

/// A frame borrowed from a [`FramePool`]; returns to it when dropped, with its tag (what the
/// user wrote there last, e.g. which frame it holds; 0 for a new buffer).
pub struct PooledFrame {
    data: Vec<u8>,
    tag: u64,
    free: Free,
}

impl FramePool {
    pub fn new(size: usize) -> Self {
        Self {
            free: Default::default(),
            size,
            initial: None,
        }
    }

    /// A pool whose new buffers are copies of `initial` (a job's static frame). Buffers
    /// coming back hold an earlier frame of the same job, so only what changes per frame
    /// needs writing.
    pub fn starting_as(initial: std::sync::Arc<[u8]>) -> Self {
        Self {
            free: Default::default(),
            size: initial.len(),
            initial: Some(initial),
        }
    }

    /// Keeps at most `keep` idle buffers (the rest are freed), for when fewer frames are in
    /// flight than before.
    pub fn trim(&self, keep: usize) {
        if let Ok(mut free) = self.free.lock() {
            free.truncate(keep);
        }
    }

    pub fn get(&self) -> PooledFrame {
        let (data, tag) = self
            .free
            .lock()
            .ok()
            .and_then(|mut f| f.pop())
            .unwrap_or_else(|| match &self.initial {
                Some(init) => (init.to_vec(), 0),
                None => (vec![0u8; self.size], 0),
            });
        PooledFrame {
            data,
            tag,
            free: self.free.clone(),
        }
    }
}

impl PooledFrame {
    /// The tag this buffer came back with (0 when new).
    pub fn tag(&self) -> u64 {
        self.tag
    }

    pub fn set_tag(&mut self, tag: u64) {
        self.tag = tag;
    }
}

impl AsRef<[u8]> for PooledFrame {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl AsMut<[u8]> for PooledFrame {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        if let Ok(mut free) = self.free.lock()
            && free.len() < 16
        {
            free.push((std::mem::take(&mut self.data), self.tag));
        }
    }
}
