//! Control messages for UDP GSO (`UDP_SEGMENT`) and GRO (`UDP_GRO`), built
//! and parsed as bytes so the callers need no pointer arithmetic.

const HEADER: usize = std::mem::size_of::<libc::cmsghdr>();
const ALIGN: usize = std::mem::size_of::<usize>();

const fn space(data_len: usize) -> usize {
    HEADER + (data_len + ALIGN - 1) / ALIGN * ALIGN
}

pub const GSO_CONTROL_SPACE: usize = space(std::mem::size_of::<u16>());
pub const GRO_CONTROL_SPACE: usize = space(std::mem::size_of::<i32>());

/// Aligned storage for one control message.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct ControlBuf {
    pub bytes: [u8; 32],
}

impl Default for ControlBuf {
    fn default() -> Self {
        ControlBuf { bytes: [0; 32] }
    }
}

impl ControlBuf {
    /// Writes a `UDP_SEGMENT` message; returns the control length to send.
    pub fn set_gso(&mut self, segment_size: u16) -> usize {
        let data_len = std::mem::size_of::<u16>();
        self.bytes = [0; 32];
        self.bytes[..ALIGN].copy_from_slice(&(HEADER + data_len).to_ne_bytes());
        self.bytes[ALIGN..ALIGN + 4].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        self.bytes[ALIGN + 4..ALIGN + 8].copy_from_slice(&libc::UDP_SEGMENT.to_ne_bytes());
        self.bytes[HEADER..HEADER + data_len].copy_from_slice(&segment_size.to_ne_bytes());
        GSO_CONTROL_SPACE
    }
}

/// Finds a `UDP_GRO` message in received control data: the segment size of
/// a coalesced datagram, or 0.
pub fn gro_segment_size(control: &[u8]) -> u16 {
    let mut rest = control;
    while rest.len() >= HEADER {
        let len = usize::from_ne_bytes(rest[..ALIGN].try_into().unwrap());
        let level = i32::from_ne_bytes(rest[ALIGN..ALIGN + 4].try_into().unwrap());
        let kind = i32::from_ne_bytes(rest[ALIGN + 4..ALIGN + 8].try_into().unwrap());
        if len < HEADER || len > rest.len() {
            return 0;
        }
        if level == libc::SOL_UDP && kind == libc::UDP_GRO && len >= HEADER + 4 {
            let size = i32::from_ne_bytes(rest[HEADER..HEADER + 4].try_into().unwrap());
            return u16::try_from(size).unwrap_or(0);
        }
        let step = space(len - HEADER);
        if step > rest.len() {
            return 0;
        }
        rest = &rest[step..];
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_message_parses_back_as_same_layout() {
        let mut buf = ControlBuf::default();
        let len = buf.set_gso(1400);
        assert_eq!(len, GSO_CONTROL_SPACE);
        // Re-label the message as GRO with an int payload to check the parser walks it.
        buf.bytes[ALIGN + 4..ALIGN + 8].copy_from_slice(&libc::UDP_GRO.to_ne_bytes());
        buf.bytes[..ALIGN].copy_from_slice(&(HEADER + 4).to_ne_bytes());
        buf.bytes[HEADER..HEADER + 4].copy_from_slice(&1400i32.to_ne_bytes());
        assert_eq!(gro_segment_size(&buf.bytes[..GRO_CONTROL_SPACE]), 1400);
    }

    #[test]
    fn garbage_control_data_is_ignored() {
        assert_eq!(gro_segment_size(&[]), 0);
        assert_eq!(gro_segment_size(&[0xff; 24]), 0);
        assert_eq!(gro_segment_size(&[0; 40]), 0);
    }
}
