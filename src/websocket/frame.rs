//! WebSocket frame headers (RFC 6455 §5.2): just enough to relay frames untouched while
//! counting message sizes, and to write the close frames the gateway itself sends.

/// Opcodes the relay tells apart.
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;

/// Close codes the gateway sends.
pub const GOING_AWAY: u16 = 1001;
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload_len: u64,
    /// Bytes the header takes on the wire (2 to 14).
    pub len: usize,
}

impl Header {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// How many header bytes follow the first two, given them: the extended length and mask.
pub fn remaining_len(first_two: [u8; 2]) -> usize {
    let ext = match first_two[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    ext + if first_two[1] & 0x80 != 0 { 4 } else { 0 }
}

/// Parses a complete header (`2 + remaining_len` bytes).
pub fn parse(bytes: &[u8]) -> Result<Header, &'static str> {
    if bytes.len() < 2 {
        return Err("short frame header");
    }
    let fin = bytes[0] & 0x80 != 0;
    let opcode = bytes[0] & 0x0f;
    let masked = bytes[1] & 0x80 != 0;
    let (payload_len, mut at) = match bytes[1] & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*bytes.get(2).ok_or("short")?, *bytes.get(3).ok_or("short")?])), 4),
        127 => {
            let ext: [u8; 8] = bytes.get(2..10).ok_or("short frame header")?.try_into().map_err(|_| "short")?;
            // RFC 6455 §5.2: the most significant bit must be 0. Lengths past 2^63 would also
            // let a message's running length wrap past its limit.
            if ext[0] & 0x80 != 0 {
                return Err("payload length over 2^63");
            }
            (u64::from_be_bytes(ext), 10)
        }
        n => (u64::from(n), 2),
    };
    if masked {
        at += 4;
    }
    if bytes.len() < at {
        return Err("short frame header");
    }
    if matches!(opcode, 0x3..=0x7 | 0xb..=0xf) {
        return Err("reserved opcode");
    }
    let header = Header { fin, opcode, masked, payload_len, len: at };
    if header.is_control() && (payload_len > 125 || !fin) {
        return Err("oversized or fragmented control frame");
    }
    Ok(header)
}

/// A close frame with `code`, masked when it goes to a server (as clients must send).
pub fn close(code: u16, reason: &str, masked: bool) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    let mut frame = vec![0x80 | CLOSE, payload.len() as u8 | if masked { 0x80 } else { 0 }];
    if masked {
        let key = fastrand::u32(..).to_be_bytes();
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(&payload);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_every_length_form_parse() {
        let small = parse(&[0x81, 0x85, 1, 2, 3, 4]).unwrap();
        assert_eq!((small.fin, small.opcode, small.masked, small.payload_len, small.len), (true, 1, true, 5, 6));
        let medium = parse(&[0x02, 126, 0x01, 0x00]).unwrap();
        assert_eq!((medium.fin, medium.payload_len, medium.len), (false, 256, 4));
        let large = parse(&[0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap();
        assert_eq!(large.payload_len, 1 << 32);
        assert_eq!(remaining_len([0x82, 0xff]), 12);
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        assert!(parse(&[0x81]).is_err());
        assert!(parse(&[0x83, 0x00]).is_err(), "reserved opcode");
        assert!(parse(&[0x89, 126, 0, 200]).is_err(), "control frame over 125 bytes");
        assert!(parse(&[0x09, 0x00]).is_err(), "fragmented control frame");
        assert!(parse(&[0x81, 127, 0, 0]).is_err());
        assert!(parse(&[0x00, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]).is_err(), "a length's most significant bit set");
        assert_eq!(
            parse(&[0x00, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap().payload_len,
            u64::MAX >> 1
        );
    }

    #[test]
    fn close_frames_are_masked_for_servers_only() {
        let to_client = close(GOING_AWAY, "bye", false);
        assert_eq!(to_client, vec![0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']);
        let to_server = close(MESSAGE_TOO_BIG, "", true);
        let header = parse(&to_server).unwrap();
        assert!(header.masked);
        let key = &to_server[2..6];
        let code = [to_server[6] ^ key[0], to_server[7] ^ key[1]];
        assert_eq!(u16::from_be_bytes(code), MESSAGE_TOO_BIG);
    }
}
