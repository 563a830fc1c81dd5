//! What a message says about each event, in the languages institutions may
//! choose: a headline (also the subject), and what to do next. Never a
//! CNIC, a document or a token: an event carries none.

use crate::domain::event::EventType;

pub use crate::domain::institution::Language;

/// The fixed words around an event's own text.
pub struct Labels {
    pub reference: &'static str,
    pub state: &'static str,
    pub reason: &'static str,
    pub next: &'static str,
    pub open: &'static str,
    pub footer: &'static str,
}

pub fn labels(lang: Language) -> Labels {
    match lang {
        Language::English => Labels {
            reference: "Reference",
            state: "State",
            reason: "Reason",
            next: "What to do next",
            open: "Open it in the console",
            footer: "National VPN Registry. This message was sent because of a change to a registration of your institution; replies are not read.",
        },
        Language::Urdu => Labels {
            reference: "حوالہ",
            state: "حیثیت",
            reason: "وجہ",
            next: "آگے کیا کریں",
            open: "کنسول میں کھولیں",
            footer: "قومی وی پی این رجسٹری۔ یہ پیغام آپ کے ادارے کی ایک رجسٹریشن میں تبدیلی کی وجہ سے بھیجا گیا ہے؛ جوابات پڑھے نہیں جاتے۔",
        },
    }
}

/// What happened (with `{ref}` and `{days}` to fill in) and what to do next.
pub fn text(event: EventType, lang: Language) -> (&'static str, &'static str) {
    match lang {
        Language::English => english(event),
        Language::Urdu => urdu(event),
    }
}

fn english(event: EventType) -> (&'static str, &'static str) {
    use EventType as E;
    match event {
        E::Submitted => (
            "We received application {ref}",
            "Your ISP will confirm the connection; then a reviewer decides, usually within 8 to 10 hours.",
        ),
        E::Attested => (
            "Your ISP confirmed the connection of {ref}; it is now with a reviewer",
            "Nothing to do: we will write again when it is decided.",
        ),
        E::AttestationDenied => (
            "Your ISP could not confirm the connection of {ref}",
            "Check the ISP and subscriber ID in the application and amend it, or ask your ISP.",
        ),
        E::InformationRequested => (
            "A reviewer needs more information about {ref}",
            "Answer by amending the application in the console.",
        ),
        E::Approved => (
            "{ref} is approved and active",
            "Traffic from the registered addresses is recognised from now on. Renew it before it expires.",
        ),
        E::Rejected => (
            "{ref} was rejected",
            "You may submit a new application that addresses the reason.",
        ),
        E::Suspended => (
            "{ref} is suspended",
            "Contact the regulator to resolve the reason; a suspended registration can be reinstated.",
        ),
        E::Reinstated => ("{ref} is active again", "Nothing to do."),
        E::Revoked => (
            "{ref} was revoked",
            "A revoked registration cannot be reinstated; submit a new application if you still need it.",
        ),
        E::Expired => (
            "{ref} has expired",
            "Request a renewal, or submit a new application, to register it again.",
        ),
        E::RenewalRequested => (
            "We received the renewal request for {ref}",
            "Your ISP will confirm the connection; then a reviewer decides. The registration stays in force meanwhile.",
        ),
        E::RenewalApproved => ("The renewal of {ref} is approved", "Nothing to do."),
        E::RenewalRejected => (
            "The renewal of {ref} was rejected",
            "The registration stays as it was until it expires.",
        ),
        E::RevisionProposed => (
            "We received your change to {ref}",
            "Your ISP will confirm the connection; then a reviewer decides. The registration stays as it is meanwhile.",
        ),
        E::RevisionApproved => ("Your change to {ref} is approved and in force", "Nothing to do."),
        E::RevisionRejected => ("Your change to {ref} was rejected", "The registration stays as it was."),
        E::ExpiryReminder => (
            "{ref} expires in {days} day(s)",
            "Request a renewal in the console before it expires.",
        ),
    }
}

fn urdu(event: EventType) -> (&'static str, &'static str) {
    use EventType as E;
    match event {
        E::Submitted => (
            "ہمیں درخواست {ref} موصول ہو گئی ہے",
            "آپ کا آئی ایس پی کنکشن کی تصدیق کرے گا؛ پھر ایک جائزہ کار عموماً 8 سے 10 گھنٹوں میں فیصلہ کرے گا۔",
        ),
        E::Attested => (
            "آپ کے آئی ایس پی نے {ref} کے کنکشن کی تصدیق کر دی ہے؛ اب یہ جائزہ کار کے پاس ہے",
            "آپ کو کچھ نہیں کرنا: فیصلہ ہوتے ہی ہم دوبارہ لکھیں گے۔",
        ),
        E::AttestationDenied => (
            "آپ کا آئی ایس پی {ref} کے کنکشن کی تصدیق نہیں کر سکا",
            "درخواست میں آئی ایس پی اور سبسکرائبر آئی ڈی چیک کر کے ترمیم کریں، یا اپنے آئی ایس پی سے پوچھیں۔",
        ),
        E::InformationRequested => (
            "جائزہ کار کو {ref} کے بارے میں مزید معلومات درکار ہیں",
            "کنسول میں درخواست میں ترمیم کر کے جواب دیں۔",
        ),
        E::Approved => (
            "{ref} منظور ہو گئی ہے اور فعال ہے",
            "رجسٹرڈ پتوں سے آنے والی ٹریفک اب تسلیم شدہ ہے۔ میعاد ختم ہونے سے پہلے تجدید کریں۔",
        ),
        E::Rejected => (
            "{ref} مسترد کر دی گئی ہے",
            "آپ وجہ دور کر کے نئی درخواست جمع کرا سکتے ہیں۔",
        ),
        E::Suspended => (
            "{ref} معطل کر دی گئی ہے",
            "وجہ دور کرنے کے لیے ریگولیٹر سے رابطہ کریں؛ معطل رجسٹریشن بحال کی جا سکتی ہے۔",
        ),
        E::Reinstated => ("{ref} دوبارہ فعال ہو گئی ہے", "آپ کو کچھ نہیں کرنا۔"),
        E::Revoked => (
            "{ref} منسوخ کر دی گئی ہے",
            "منسوخ شدہ رجسٹریشن بحال نہیں ہو سکتی؛ ضرورت ہو تو نئی درخواست جمع کرائیں۔",
        ),
        E::Expired => (
            "{ref} کی میعاد ختم ہو گئی ہے",
            "دوبارہ رجسٹر کرنے کے لیے تجدید کی درخواست دیں یا نئی درخواست جمع کرائیں۔",
        ),
        E::RenewalRequested => (
            "ہمیں {ref} کی تجدید کی درخواست موصول ہو گئی ہے",
            "آپ کا آئی ایس پی کنکشن کی تصدیق کرے گا؛ پھر جائزہ کار فیصلہ کرے گا۔ اس دوران رجسٹریشن نافذ رہے گی۔",
        ),
        E::RenewalApproved => ("{ref} کی تجدید منظور ہو گئی ہے", "آپ کو کچھ نہیں کرنا۔"),
        E::RenewalRejected => (
            "{ref} کی تجدید مسترد کر دی گئی ہے",
            "رجسٹریشن میعاد ختم ہونے تک پہلے کی طرح برقرار رہے گی۔",
        ),
        E::RevisionProposed => (
            "ہمیں {ref} میں آپ کی تبدیلی موصول ہو گئی ہے",
            "آپ کا آئی ایس پی کنکشن کی تصدیق کرے گا؛ پھر جائزہ کار فیصلہ کرے گا۔ اس دوران رجسٹریشن جوں کی توں رہے گی۔",
        ),
        E::RevisionApproved => (
            "{ref} میں آپ کی تبدیلی منظور ہو کر نافذ ہو گئی ہے",
            "آپ کو کچھ نہیں کرنا۔",
        ),
        E::RevisionRejected => (
            "{ref} میں آپ کی تبدیلی مسترد کر دی گئی ہے",
            "رجسٹریشن پہلے کی طرح برقرار ہے۔",
        ),
        E::ExpiryReminder => (
            "{ref} کی میعاد {days} دن میں ختم ہو رہی ہے",
            "میعاد ختم ہونے سے پہلے کنسول میں تجدید کی درخواست دیں۔",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_names_its_registration_in_every_language() {
        for &event in EventType::ALL {
            for lang in [Language::English, Language::Urdu] {
                let (what, next) = text(event, lang);
                assert!(what.contains("{ref}"), "{event} {lang:?}");
                assert!(!next.is_empty());
                assert_eq!(what.contains("{days}"), event == EventType::ExpiryReminder);
            }
        }
    }
}
