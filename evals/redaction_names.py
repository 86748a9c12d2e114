"""Hand-written name lists for the PERSON corpus, independent of the seeder's source (Faker's locale lists).

Written from naming conventions of each region (Yoruba, Igbo, Hausa, Efik, Ijaw and Tiv names for Nigeria;
Akan day names, Ewe, Ga and Dagbani for Ghana; Kikuyu, Luo, Luhya, Kalenjin, Kamba, Meru and coastal Swahili
for Kenya; English, Scottish, Welsh, Irish and South Asian British names; Anglo, Hispanic, African-American
and Asian-American names for the US). Many common names also appear in Faker's lists (the detector's lexicon);
`evals.redaction_eval` reports recall on names outside that lexicon separately, so the corpus cannot be passed
by learning the lexicon.
"""

from __future__ import annotations

FIRST: dict[str, tuple[str, ...]] = {
    "NG": (
        "Adebola", "Adeyemi", "Ayodele", "Babatunde", "Bolanle", "Damilola", "Folasade", "Funmilayo", "Ibukunoluwa",
        "Iyabo", "Kehinde", "Modupe", "Morenike", "Olamide", "Oluwadamilare", "Oluwatoyin", "Temitope", "Titilayo",
        "Yetunde", "Adaeze", "Chiamaka", "Chibuike", "Chidiebere", "Chinonso", "Ebuka", "Ifeoma", "Ikechukwu",
        "Kelechi", "Nnamdi", "Obinna", "Somtochukwu", "Uchenna", "Ugochi", "Nneka", "Amarachi", "Ekene", "Aminu",
        "Bashir", "Hadiza", "Halima", "Ibrahim", "Maryam", "Sani", "Usman", "Zainab", "Yakubu", "Hauwa", "Abubakar",
        "Ekaette", "Ime", "Nsikak", "Ebiere", "Tarila", "Terhemba", "Msughter", "Oghenekaro", "Ejiro", "Efe",
    ),
    "GH": (
        "Kwadwo", "Kwabena", "Kwaku", "Yaw", "Kofi", "Kwame", "Kwasi", "Akosua", "Adjoa", "Abenaa", "Akua", "Yaa",
        "Afia", "Ama", "Esi", "Ekua", "Efua", "Kojo", "Ebo", "Fiifi", "Kobby", "Nii", "Naa", "Dede", "Korkor",
        "Selasi", "Elikem", "Edem", "Senyo", "Dzifa", "Mawuli", "Delali", "Fuseini", "Abdul-Rahman", "Memuna",
        "Alhassan", "Wumpini", "Nyarko", "Obeng", "Ohenewaa", "Serwaa", "Nhyira", "Adwoa", "Araba",
    ),
    "KE": (
        "Wanjiru", "Njeri", "Wambui", "Nyambura", "Wairimu", "Kamau", "Njoroge", "Mwangi", "Kariuki", "Githinji",
        "Achieng", "Akinyi", "Atieno", "Awino", "Otieno", "Ochieng", "Omondi", "Odhiambo", "Wekesa", "Nafula",
        "Nekesa", "Barasa", "Kiprono", "Kipchoge", "Chebet", "Jepkosgei", "Cherono", "Kiptoo", "Mutua", "Mwende",
        "Nduku", "Kioko", "Kawira", "Gatwiri", "Mwanaisha", "Fatuma", "Bakari", "Rehema", "Zawadi", "Baraka",
    ),
    "GB": (
        "Oliver", "Harry", "George", "Charlotte", "Amelia", "Isla", "Poppy", "Freya", "Alfie", "Archie", "Hamish",
        "Fiona", "Callum", "Eilidh", "Rhys", "Gethin", "Cerys", "Siobhan", "Niamh", "Ciaran", "Declan", "Priya",
        "Rajesh", "Anjali", "Imran", "Nadia", "Aisha", "Tariq", "Harriet", "Rupert", "Imogen", "Jemima", "Nigel",
        "Gareth", "Bronwen", "Euan", "Morag", "Tobias", "Beatrix", "Ffion",
    ),
    "US": (
        "Madison", "Brittany", "Tyler", "Cody", "Dakota", "Jaden", "Kayla", "Trevor", "Brandon", "Ashley",
        "DeShawn", "LaToya", "Jamal", "Keisha", "Tyrone", "Imani", "Marisol", "Alejandro", "Guadalupe", "Xiomara",
        "Jesus", "Esperanza", "Minh", "Thuy", "Jae-won", "Hyun", "Wei", "Mei-Ling", "Rohan", "Neha", "Dwayne",
        "Bobbie", "Tammy", "Earl", "Clint", "Luann", "Brody", "Colby", "Kendra", "Shanice",
    ),
}

LAST: dict[str, tuple[str, ...]] = {
    "NG": (
        "Adeyemi", "Adebayo", "Ogunleye", "Oladipo", "Ogunbanjo", "Akinola", "Olatunji", "Fashola", "Adeleke",
        "Ayoola", "Okafor", "Okonkwo", "Nwosu", "Eze", "Obi", "Nwachukwu", "Uzoma", "Anyanwu", "Okeke", "Chukwuma",
        "Onyekachi", "Nwankwo", "Ibekwe", "Bello", "Abdullahi", "Musa", "Danjuma", "Garba", "Lawal", "Suleiman",
        "Yusuf", "Umar", "Effiong", "Etim", "Bassey", "Ekpo", "Tamuno", "Ayiba", "Tersoo", "Iorliam", "Omokaro",
        "Oghenero", "Ejiofor", "Onwuachi", "Ogbonna", "Ikwuemesi",
    ),
    "GH": (
        "Mensah", "Owusu", "Boateng", "Asante", "Osei", "Agyeman", "Appiah", "Acheampong", "Darko", "Amoah",
        "Ofori", "Sarpong", "Antwi", "Gyamfi", "Kyei", "Tetteh", "Quaye", "Lamptey", "Laryea", "Ankrah", "Nortey",
        "Agbodza", "Kpodo", "Dzidzienyo", "Amenyo", "Gbedemah", "Iddrisu", "Mahama", "Abdulai", "Yakubu",
        "Bawumia", "Quartey", "Ampofo", "Frimpong", "Oppong", "Kusi",
    ),
    "KE": (
        "Kamau", "Mwangi", "Njoroge", "Kariuki", "Gitau", "Wainaina", "Muriithi", "Kimani", "Ngugi", "Otieno",
        "Ochieng", "Odhiambo", "Onyango", "Owino", "Oduya", "Wafula", "Wanyama", "Simiyu", "Were", "Kiprotich",
        "Rotich", "Kipkemboi", "Korir", "Cheruiyot", "Mutiso", "Musyoka", "Kilonzo", "Mwiti", "Kirimi", "Nyaga",
        "Abdalla", "Mohamed", "Salim", "Wanjala", "Kiplagat", "Lagat",
    ),
    "GB": (
        "Smith", "Jones", "Taylor", "Davies", "Evans", "Thomas", "Roberts", "Hughes", "Wright", "Hall", "Turner",
        "Whitfield", "Ashworth", "Pemberton", "Featherstone", "Ramsbottom", "Higginbottom", "Macdonald", "Campbell",
        "Fraser", "Mackenzie", "Sinclair", "Llewellyn", "Pritchard", "Prosser", "O'Sullivan", "McCarthy", "Doherty",
        "Gallagher", "Patel", "Choudhury", "Rahman", "Begum", "Hussain", "Khan", "Singh", "Sandhu",
        "Fotheringham", "Cholmondeley", "Winterbottom",
    ),
    "US": (
        "Johnson", "Williams", "Brown", "Miller", "Davis", "Garcia", "Rodriguez", "Martinez", "Hernandez", "Lopez",
        "Gonzalez", "Washington", "Jefferson", "Jackson", "Robinson", "Nguyen", "Tran", "Pham", "Kim", "Park", "Lee",
        "Chen", "Wong", "Yamamoto", "Kowalski", "Nowak", "Schneider", "O'Brien", "Sullivan", "Kaczmarek",
        "Abernathy", "Vanderbilt", "Delacroix", "Fitzgerald", "McAllister", "Rosenberg", "Goldstein",
    ),
}

# Multi-part and hyphenated surnames as they are written.
COMPOUND_LAST: tuple[str, ...] = (
    "Okafor-Eze", "Adeyemi-Johnson", "Owusu-Ansah", "Agyei-Mensah", "Boakye-Danquah", "Smith-Jones",
    "Lloyd-Webber", "Garcia-Lopez", "Bonham-Carter", "Wa Thiong'o", "Ole Sapit", "Van der Merwe", "De la Cruz",
    "Ogunleye-Bello", "Kariuki-Njoroge", "Nana-Yaw Asare",
)

TITLES: tuple[str, ...] = (
    "Mr", "Mrs", "Ms", "Miss", "Dr", "Dr.", "Prof.", "Chief", "Alhaji", "Alhaja", "Hajia", "Mallam", "Engr.", "Barr.",
    "Pastor", "Rev.", "Nana", "Mzee", "Madam", "Sir", "Lady", "Capt.",
)

# Things that are capitalised like names but are not people: they must survive redaction.
MERCHANTS: tuple[str, ...] = (
    "Shoprite", "Jumia", "Konga", "Chicken Republic", "Mr Biggs", "Mama Cass", "Kilimanjaro", "Tantalizers",
    "Spar", "Melcom", "Game Stores", "Palace Mall", "Naivas", "Carrefour", "Quickmart", "Java House", "Artcaffe",
    "Tesco", "Sainsbury's", "Marks & Spencer", "Greggs", "Pret A Manger", "John Lewis", "Walmart", "Target",
    "Costco", "Trader Joe's", "Whole Foods", "Wendy's", "Dunkin'", "McDonald's", "Netflix", "Spotify", "Uber",
    "Bolt", "Glovo", "Deliveroo", "DStv", "GOtv", "Showmax", "Amazon", "Apple", "Google Play", "Airbnb",
)
BANKS: tuple[str, ...] = (
    "GTBank", "Guaranty Trust Bank", "Access Bank", "Zenith Bank", "First Bank", "UBA", "Fidelity Bank",
    "Sterling Bank", "Wema Bank", "Stanbic IBTC", "Kuda", "Opay", "Moniepoint", "PalmPay", "GCB Bank",
    "Ecobank", "Fidelity Bank Ghana", "CalBank", "Absa", "MTN MoMo", "Vodafone Cash", "AirtelTigo Money",
    "Equity Bank", "KCB", "Co-operative Bank", "NCBA", "M-Pesa", "Barclays", "HSBC", "Lloyds", "NatWest",
    "Monzo", "Starling", "Revolut", "Chase", "Wells Fargo", "Bank of America", "Citibank", "Santander",
)
PLACES: tuple[str, ...] = (
    "Lagos", "Ikeja", "Lekki", "Yaba", "Surulere", "Abuja", "Wuse", "Garki", "Kano", "Kaduna", "Ibadan",
    "Port Harcourt", "Enugu", "Onitsha", "Aba", "Benin City", "Warri", "Jos", "Calabar", "Uyo", "Accra",
    "Kumasi", "Tema", "Takoradi", "Tamale", "Cape Coast", "Osu", "East Legon", "Madina", "Nairobi", "Mombasa",
    "Kisumu", "Nakuru", "Eldoret", "Thika", "Westlands", "Kilimani", "Karen", "London", "Manchester",
    "Birmingham", "Leeds", "Peckham", "Croydon", "Glasgow", "Cardiff", "Houston", "Atlanta", "New York",
    "Newark", "Silver Spring", "Dallas", "Minneapolis", "Nigeria", "Ghana", "Kenya", "the United Kingdom", "Texas",
)
PRODUCTS: tuple[str, ...] = (
    "iPhone 15", "Galaxy S24", "PlayStation 5", "MacBook Air", "Infinix Hot 40", "Tecno Camon", "Xbox",
    "Premium Plan", "Gold Savings", "Kredete Card", "Credit Builder", "Visa Debit", "Mastercard World",
)
# Sentence openers and capitalised ordinary words (support-speak) that are not names.
CAPITALISED_WORDS: tuple[str, ...] = (
    "Please", "Kindly", "Urgent", "Hello", "Hi", "Thanks", "Regards", "Dear Sir", "Customer", "Agent",
    "Dispute", "Refund", "Chargeback", "Pending", "Reversal", "Complaint", "Escalated", "Resolved", "Note",
    "Update", "Bureau", "Equifax", "Experian", "TransUnion", "CRC", "FirstCentral", "Visa", "Mastercard",
    "Verve", "Monday", "Friday", "Sunday", "January", "March", "August", "December", "Christmas", "Easter",
    "Sallah", "Ramadan", "Black Friday", "USD", "NGN", "GHS", "KES", "GBP", "USDC", "USDT", "Naira", "Cedis",
)
