//! Evidence: which documents an application needs (the regulator's
//! published list, plus ours for banks and foreign missions), what a
//! document's content is (decided by its bytes, never its name), and how
//! large it may be.

use uuid::Uuid;

use super::db_enum::db_enum;
use super::institution::Category;
use super::registration::Kind;

db_enum!(
    /// What a document is.
    DocumentType {
        CnicFront => "CNIC_FRONT",
        CnicBack => "CNIC_BACK",
        IncorporationLetter => "INCORPORATION_LETTER",
        TaxpayerProof => "TAXPAYER_PROOF",
        EmployerLetter => "EMPLOYER_LETTER",
        PsebCertificate => "PSEB_CERTIFICATE",
        GovernmentLetter => "GOVERNMENT_LETTER",
        SbpLicenceLetter => "SBP_LICENCE_LETTER",
        AccreditationNote => "ACCREDITATION_NOTE",
    }
);

impl DocumentType {
    /// How people call it.
    pub fn label(self) -> &'static str {
        match self {
            Self::CnicFront => "CNIC (front)",
            Self::CnicBack => "CNIC (back)",
            Self::IncorporationLetter => "Letter of incorporation",
            Self::TaxpayerProof => "Proof of active taxpayer status",
            Self::EmployerLetter => "Letter of authentication from the employer or business concern",
            Self::PsebCertificate => "PSEB call-centre registration certificate",
            Self::GovernmentLetter => "Letter from the government body or company",
            Self::SbpLicenceLetter => "SBP licence letter",
            Self::AccreditationNote => "Foreign ministry's accreditation note",
        }
    }
}

db_enum!(
    /// Where a document stands with the reviewer.
    DocumentStatus {
        Pending => "PENDING",
        Verified => "VERIFIED",
        Rejected => "REJECTED",
    }
);

/// Whose documents an upload or a list names: a registration's, or an
/// institution's own (`registration` empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub institution: Uuid,
    pub registration: Option<Uuid>,
}

/// One requirement: any one of these documents satisfies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement(pub &'static [DocumentType]);

use DocumentType as D;

const CNIC: [Requirement; 2] = [Requirement(&[D::CnicFront]), Requirement(&[D::CnicBack])];
const INCORPORATED: Requirement = Requirement(&[D::IncorporationLetter, D::TaxpayerProof]);

/// The documents a registration of `kind` by an institution of `category`
/// needs: one table, the regulator's published list and our additions.
pub fn required(category: Category, kind: Kind) -> Vec<Requirement> {
    let mut needs: Vec<Requirement> = match category {
        // A foreign mission's head of mission has no CNIC: the ministry's note stands for it.
        Category::ForeignMission => vec![Requirement(&[D::AccreditationNote])],
        _ => CNIC.to_vec(),
    };
    match (kind, category) {
        (Kind::CallCenterVoip, _) => {
            needs.push(INCORPORATED);
            needs.push(Requirement(&[D::PsebCertificate]));
        }
        (Kind::VideoConferencing, Category::Government) => needs.push(Requirement(&[D::GovernmentLetter])),
        (Kind::VideoConferencing, _) => needs.push(Requirement(&[D::IncorporationLetter, D::GovernmentLetter])),
        (Kind::Vpn, Category::Freelancer) => needs.push(Requirement(&[D::EmployerLetter])),
        (Kind::Vpn, Category::Government | Category::ForeignMission) => {}
        (Kind::Vpn, _) => needs.push(INCORPORATED),
    }
    if category == Category::Bank {
        needs.push(Requirement(&[D::SbpLicenceLetter]));
    }
    needs
}

db_enum!(
    /// Why a requirement is not met yet.
    Gap {
        Missing => "MISSING",
        Pending => "PENDING",
        Rejected => "REJECTED",
    }
);

/// Each requirement with what stands in its way (`None`: a verified
/// document meets it), given the current documents (type, status).
pub fn checklist(
    needs: &[Requirement],
    documents: &[(DocumentType, DocumentStatus)],
) -> Vec<(Requirement, Option<Gap>)> {
    needs
        .iter()
        .map(|need| {
            let statuses: Vec<DocumentStatus> = documents
                .iter()
                .filter(|(t, _)| need.0.contains(t))
                .map(|(_, s)| *s)
                .collect();
            let gap = if statuses.contains(&DocumentStatus::Verified) {
                None
            } else if statuses.contains(&DocumentStatus::Pending) {
                Some(Gap::Pending)
            } else if statuses.contains(&DocumentStatus::Rejected) {
                Some(Gap::Rejected)
            } else {
                Some(Gap::Missing)
            };
            (*need, gap)
        })
        .collect()
}

/// A fee the application owes and nobody has paid yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpaidFee {
    pub psid: String,
    pub amount_pkr: i64,
}

/// Whether an application may be approved: every requirement met by a
/// verified document and every fee paid, or the refusal naming each gap.
pub fn ready_to_approve(
    checklist: &[(Requirement, Option<Gap>)],
    unpaid: &[UnpaidFee],
) -> Result<(), super::refusal::Refusal> {
    let mut gaps: Vec<(&'static str, String, String)> = checklist
        .iter()
        .filter_map(|(need, gap)| {
            let gap = (*gap)?;
            let names: Vec<&str> = need.0.iter().map(|t| t.as_str()).collect();
            let labels: Vec<&str> = need.0.iter().map(|t| t.label()).collect();
            let what = match gap {
                Gap::Missing => "is missing",
                Gap::Pending => "is not verified yet",
                Gap::Rejected => "was rejected",
            };
            let kind = match gap {
                Gap::Missing => "DOCUMENT_MISSING",
                Gap::Pending => "DOCUMENT_UNVERIFIED",
                Gap::Rejected => "DOCUMENT_REJECTED",
            };
            Some((
                kind,
                format!("documents/{}", names.join("|")),
                format!("{} {what}", labels.join(" or ")),
            ))
        })
        .collect();
    gaps.extend(unpaid.iter().map(|fee| {
        (
            "FEE_UNPAID",
            format!("challans/{}", fee.psid),
            format!("the fee of PKR {} (challan {}) is unpaid", fee.amount_pkr, fee.psid),
        )
    }));
    if gaps.is_empty() {
        Ok(())
    } else {
        Err(super::refusal::Refusal::Incomplete(gaps))
    }
}

/// The largest document accepted unless configured (`--max-document-bytes`).
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 10 * 1024 * 1024;

db_enum!(
    /// The content types a document may have.
    MediaType {
        Pdf => "application/pdf",
        Jpeg => "image/jpeg",
        Png => "image/png",
    }
);

/// What content starting with `head` is: one of ours, or why not (naming
/// what it looks like). `head` is the first chunk (64 bytes or more name
/// the refused formats best).
pub fn sniff(head: &[u8]) -> Result<MediaType, String> {
    if head.starts_with(b"%PDF-") {
        return Ok(MediaType::Pdf);
    }
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(MediaType::Jpeg);
    }
    if head.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        return Ok(MediaType::Png);
    }
    let what = match infer::get(head) {
        Some(t) => format!("{} ({})", t.mime_type(), t.extension()),
        None if std::str::from_utf8(head).is_ok_and(|t| !t.chars().any(|c| c.is_control() && !c.is_whitespace())) => {
            "plain text".to_owned()
        }
        None => "an unrecognised binary format".to_owned(),
    };
    Err(format!("is {what}; only PDF, JPEG and PNG documents are accepted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_list_and_our_additions() {
        let types = |c, k| -> Vec<Vec<&str>> {
            required(c, k)
                .iter()
                .map(|r| r.0.iter().map(|d| d.as_str()).collect())
                .collect()
        };
        assert_eq!(
            types(Category::ItCompany, Kind::Vpn),
            [
                vec!["CNIC_FRONT"],
                vec!["CNIC_BACK"],
                vec!["INCORPORATION_LETTER", "TAXPAYER_PROOF"]
            ]
        );
        assert_eq!(
            types(Category::Freelancer, Kind::Vpn),
            [vec!["CNIC_FRONT"], vec!["CNIC_BACK"], vec!["EMPLOYER_LETTER"]]
        );
        assert_eq!(
            types(Category::CallCenterBpo, Kind::CallCenterVoip),
            [
                vec!["CNIC_FRONT"],
                vec!["CNIC_BACK"],
                vec!["INCORPORATION_LETTER", "TAXPAYER_PROOF"],
                vec!["PSEB_CERTIFICATE"]
            ]
        );
        assert_eq!(
            types(Category::Company, Kind::VideoConferencing),
            [
                vec!["CNIC_FRONT"],
                vec!["CNIC_BACK"],
                vec!["INCORPORATION_LETTER", "GOVERNMENT_LETTER"]
            ]
        );
        assert!(types(Category::Bank, Kind::Vpn).contains(&vec!["SBP_LICENCE_LETTER"]));
        assert_eq!(types(Category::ForeignMission, Kind::Vpn), [vec!["ACCREDITATION_NOTE"]]);
    }

    #[test]
    fn a_requirement_is_met_by_any_verified_alternative() {
        let needs = required(Category::Company, Kind::Vpn);
        let gaps = |docs: &[(DocumentType, DocumentStatus)]| -> Vec<Option<Gap>> {
            checklist(&needs, docs).into_iter().map(|(_, g)| g).collect()
        };
        assert_eq!(gaps(&[]), [Some(Gap::Missing); 3]);
        assert_eq!(
            gaps(&[
                (D::CnicFront, DocumentStatus::Verified),
                (D::CnicBack, DocumentStatus::Rejected),
                (D::TaxpayerProof, DocumentStatus::Pending),
            ]),
            [None, Some(Gap::Rejected), Some(Gap::Pending)]
        );
        assert_eq!(
            gaps(&[
                (D::CnicFront, DocumentStatus::Verified),
                (D::CnicBack, DocumentStatus::Verified),
                (D::IncorporationLetter, DocumentStatus::Rejected),
                (D::TaxpayerProof, DocumentStatus::Verified),
            ]),
            [None, None, None],
            "either alternative"
        );
    }

    #[test]
    fn content_decides_the_type_and_names_what_it_refuses() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), Ok(MediaType::Pdf));
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F']),
            Ok(MediaType::Jpeg)
        );
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Ok(MediaType::Png));
        let padded = |head: &[u8]| [head, &[0u8; 64]].concat();
        let elf = sniff(&padded(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0")).unwrap_err();
        assert!(elf.contains("elf") || elf.contains("executable"), "{elf}");
        let exe = sniff(&padded(b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0")).unwrap_err();
        assert!(exe.contains("exe") || exe.contains("msdownload"), "{exe}");
        assert!(sniff(b"  <!DOCTYPE html><html>").unwrap_err().contains("text/html"));
        assert!(sniff(b"hello there").unwrap_err().contains("plain text"));
    }
}
