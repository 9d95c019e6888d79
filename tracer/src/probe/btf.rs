//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): just enough to find the
//! byte offset of a struct member, looking through anonymous structs and unions, so the
//! kernel programs never carry offsets compiled for one kernel.

/// What can go wrong reading BTF.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF data (bad magic {0:#06x})")]
    BadMagic(u16),
    #[error("BTF data is truncated: {0}")]
    Truncated(&'static str),
    #[error("unknown BTF type kind {kind} (type id {id})")]
    UnknownKind { kind: u32, id: u32 },
    #[error("struct {0} is not in the kernel's BTF")]
    NoStruct(String),
    #[error("struct {strukt} has no member {member} in the kernel's BTF")]
    NoMember { strukt: String, member: String },
    #[error("{strukt}.{member} is a bitfield; its byte offset is not usable")]
    Bitfield { strukt: String, member: String },
}

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// A struct or union member, read from the raw type section when asked for.
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

/// One type's fixed part.
#[derive(Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    /// Members of a struct or union.
    vlen: u32,
    kind_flag: bool,
    /// For modifiers and typedefs: the type referred to.
    ref_type: u32,
    /// Where its members start in the type section.
    members_at: usize,
}

/// The kernel's BTF, borrowed: one offset per type id is all that is kept (the kernel's BTF
/// has ~150k types; copying them or their members costs megabytes of peak RSS); member
/// offsets are looked up by struct and member name.
pub struct Btf<'a> {
    types_raw: &'a [u8],
    strings: &'a [u8],
    /// Where each type id's record starts in the type section (id 0, void, is never read).
    offsets: Vec<u32>,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl<'a> Btf<'a> {
    /// Parses raw BTF (little-endian, as on x86_64 and arm64).
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let magic = u16_at(data, 0).ok_or(BtfError::Truncated("header"))?;
        if magic != 0xeb9f {
            return Err(BtfError::BadMagic(magic));
        }
        let hdr_len = u32_at(data, 4).ok_or(BtfError::Truncated("header"))? as usize;
        let field = |i: usize| {
            u32_at(data, 8 + 4 * i)
                .map(|v| v as usize)
                .ok_or(BtfError::Truncated("header"))
        };
        let (type_off, type_len, str_off, str_len) = (field(0)?, field(1)?, field(2)?, field(3)?);
        let types_raw = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Truncated("type section"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Truncated("string section"))?;

        // Type id 0 is void.
        let mut offsets = vec![u32::MAX];
        let mut off = 0;
        while off < types_raw.len() {
            let info = u32_at(types_raw, off + 4).ok_or(BtfError::Truncated("type"))?;
            u32_at(types_raw, off + 8).ok_or(BtfError::Truncated("type"))?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let extra = match kind {
                0 => 0,
                1 => 4,                    // INT
                2 | 7..=12 | 16 | 18 => 0, // PTR FWD TYPEDEF VOLATILE CONST RESTRICT FUNC FLOAT TYPE_TAG
                3 => 12,                   // ARRAY
                KIND_STRUCT | KIND_UNION => 12 * vlen,
                6 | 13 => 8 * vlen,   // ENUM FUNC_PROTO
                14 | 17 => 4,         // VAR DECL_TAG
                15 | 19 => 12 * vlen, // DATASEC ENUM64
                _ => {
                    return Err(BtfError::UnknownKind {
                        kind,
                        id: offsets.len() as u32,
                    });
                }
            };
            if off + 12 + extra > types_raw.len() {
                return Err(BtfError::Truncated(
                    if matches!(kind, KIND_STRUCT | KIND_UNION) {
                        "member"
                    } else {
                        "type"
                    },
                ));
            }
            offsets.push(off as u32);
            off += 12 + extra;
        }
        Ok(Btf {
            types_raw,
            strings,
            offsets,
        })
    }

    /// The type with this id (None for void and ids out of range).
    fn get(&self, id: u32) -> Option<Type> {
        let off = *self.offsets.get(id as usize).filter(|&&o| o != u32::MAX)? as usize;
        let raw = self.types_raw;
        let info = u32_at(raw, off + 4)?;
        Some(Type {
            name_off: u32_at(raw, off)?,
            kind: (info >> 24) & 0x1f,
            vlen: info & 0xffff,
            kind_flag: info >> 31 == 1,
            ref_type: u32_at(raw, off + 8)?,
            members_at: off + 12,
        })
    }

    fn name(&self, off: u32) -> &'a [u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<Type> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.ref_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    fn members_of(&self, t: Type) -> impl Iterator<Item = Member> + '_ {
        let n = if matches!(t.kind, KIND_STRUCT | KIND_UNION) {
            t.vlen as usize
        } else {
            0
        };
        (0..n).filter_map(move |i| {
            let m = |j: usize| u32_at(self.types_raw, t.members_at + 12 * i + 4 * j);
            let raw = m(2)?;
            let (bit_offset, bitfield_size) = if t.kind_flag {
                (raw & 0xff_ffff, raw >> 24)
            } else {
                (raw, 0)
            };
            Some(Member {
                name_off: m(0)?,
                type_id: m(1)?,
                bit_offset,
                bitfield_size,
            })
        })
    }

    /// Bit offset of `member` within `t`, searching anonymous struct/union members too.
    fn find_member(&self, t: Type, member: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        for m in self.members_of(t) {
            if m.name_off != 0 && self.name(m.name_off) == member.as_bytes() {
                return Some((m.bit_offset, m.bitfield_size));
            }
        }
        for m in self.members_of(t).filter(|m| m.name_off == 0) {
            if let Some(inner) = self.resolve(m.type_id)
                && matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some((bits, size)) = self.find_member(inner, member, depth + 1)
            {
                return Some((m.bit_offset + bits, size));
            }
        }
        None
    }

    /// The first struct with members named `name`.
    fn find_struct(&self, name: &str) -> Option<Type> {
        (1..self.offsets.len() as u32)
            .filter_map(|id| self.get(id))
            .find(|t| {
                t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == name.as_bytes()
            })
    }

    /// Byte offset of `strukt.member` (members of anonymous structs and unions included).
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let t = self
            .find_struct(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        let (bits, bitfield_size) =
            self.find_member(t, member, 0)
                .ok_or_else(|| BtfError::NoMember {
                    strukt: strukt.to_owned(),
                    member: member.to_owned(),
                })?;
        if bitfield_size != 0 || bits % 8 != 0 {
            return Err(BtfError::Bitfield {
                strukt: strukt.to_owned(),
                member: member.to_owned(),
            });
        }
        Ok(bits / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF bytes from (name, info, size_or_type, trailing words) entries.
    fn build(types: &[(u32, u32, u32, Vec<u32>)], strings: &[u8]) -> Vec<u8> {
        let mut ty = Vec::new();
        for (name, info, st, extra) in types {
            for w in [*name, *info, *st].iter().chain(extra) {
                ty.extend_from_slice(&w.to_le_bytes());
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.push(1);
        out.push(0);
        out.extend_from_slice(&24u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(ty.len() as u32).to_le_bytes());
        out.extend_from_slice(&(ty.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&ty);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_typedefs() {
        // strings: 0 "", 1 "int", 5 "task", 10 "pid", 14 "mm", 17 "u32t"
        let strings = b"\0int\0task\0pid\0mm\0u32t\0";
        let int = (1, 1 << 24, 4, vec![32]); // id 1: int
        let anon = (0, (KIND_UNION << 24) | 1, 8, vec![14, 1, 0]); // id 2: union { int mm; }
        let td = (17, KIND_TYPEDEF << 24, 2, vec![]); // id 3: typedef of the union
        // id 4: struct task { int pid @ 32 bits; <anon typedef> @ 128 bits }
        let task = (5, (KIND_STRUCT << 24) | 2, 24, vec![10, 1, 32, 0, 3, 128]);
        let data = build(&[int, anon, td, task], strings);
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.member_offset("task", "pid"), Ok(4));
        assert_eq!(btf.member_offset("task", "mm"), Ok(16));
        assert!(matches!(
            btf.member_offset("task", "nope"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("nope", "pid"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Btf::parse(&[0, 0, 0]).err(), Some(BtfError::BadMagic(0)));
        assert_eq!(
            Btf::parse(&[0x9f, 0xeb]).err(),
            Some(BtfError::Truncated("header"))
        );
        let mut data = build(&[(0, 1 << 24, 4, vec![32])], b"\0");
        data.truncate(data.len() - 3);
        assert!(Btf::parse(&data).is_err());
    }

    #[test]
    fn reads_this_kernels_task_struct() {
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("skipped: /sys/kernel/btf/vmlinux is not readable here");
            return;
        };
        let btf = Btf::parse(&data).unwrap();
        let pid = btf.member_offset("task_struct", "pid").unwrap();
        let tgid = btf.member_offset("task_struct", "tgid").unwrap();
        assert_eq!(tgid, pid + 4, "pid and tgid are adjacent pid_t fields");
        let start = btf.member_offset("mm_struct", "arg_start").unwrap();
        let end = btf.member_offset("mm_struct", "arg_end").unwrap();
        assert_eq!(end, start + 8);
    }
}
